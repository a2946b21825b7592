"""The ground floor: errors, typed build configuration, atomic file io and the one vocabulary (resources, the hardware domain, node kinds, stage names) every other wing speaks."""
