"""Synthetic pedestrian data sets in the exact on-disk layout of the real ones.

`synthesize(out_dir, SynthConfig(...))` writes one and returns the root for `load_dataset`;
identity is carried by clothing, accessories and body shape, while cameras differ in colour
cast, light, background and blur equally for everyone, so a small CNN can learn the ids
without the camera giving them away.
"""

from kdas.data.synthetic.config import SynthConfig
from kdas.data.synthetic.generate import synthesize
from kdas.files import SYNTH_CONFIG_FILE as CONFIG_FILE

__all__ = ["CONFIG_FILE", "SynthConfig", "synthesize"]
