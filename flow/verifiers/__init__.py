"""Verification backends as plug-ins: each checks a build's stages and adds its own report section."""
