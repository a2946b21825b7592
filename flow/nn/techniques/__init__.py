"""Ways to obtain the quantized network, behind one registry (:mod:`.registry`).

Methods (one per run): ``qat`` (:mod:`.qat`), ``ptq`` (:mod:`.ptq`). Modifiers (any, in
recipe order): ``distill`` (:mod:`.distill`), ``lowrank`` (:mod:`.lowrank`). Mixed precision
per layer is a model option (``[model.layers.fc0]``) and composes with all of them.
:mod:`.twin` holds the float twin they share; :mod:`.base` what a technique is.
"""
