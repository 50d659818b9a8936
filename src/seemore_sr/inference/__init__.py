"""Inference: the engine, tiles, fast executors, images, folders and videos."""

# ``mirror``: input pixels of the image mirrored around it before the network runs (and
# cropped from the output). The network pads its convs with zeros, so at the border it
# sees a frame of the training data's mean colour: flat colours drift there (the "border
# rim", issue 24: up to 28 / 47 / 44 levels at x2 / x3 / x4 within 12 output pixels of
# the edge with the bundled weights), which 4 mirrored pixels remove (1 / 3 / 4 levels;
# ``scripts/border_rim.py``). On photographs the network has learned to use the frame:
# 4 mirrored pixels cost 0.05 dB on Set5 and Set14 and 0.01 dB on B100
# (``campaign/results/bundled-x*-mirror4.json``). So the default is 0, the network on the
# image alone as the authors' code runs it; ``--mirror 4`` is for flat graphics (logos,
# screenshots, UI art).
MIRROR = 0
MIRROR_GRAPHICS = 4
