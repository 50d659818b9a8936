"""Inference: the engine, tiles, fast executors, images, folders and videos."""

# ``mirror``: input pixels of the image mirrored around it before the network runs (and
# cropped from the output). The network pads its convs with zeros, so at the border it
# sees a frame of the training data's mean colour: flat colours drift there (the "border
# rim": up to 47 / 44 levels at x3 / x4 within 12 output pixels of the edge with
# the bundled weights; x2's, trained with flat patches, 5), which 4 mirrored pixels remove
# (1 / 3 / 4 levels at x2 / x3 / x4; ``scripts/border_rim.py``). On photographs the
# network has learned to use the frame:
# 4 mirrored pixels on every side cost 0.05 dB on Set5 and Set14 and 0.01 dB on B100
# (``campaign/results/bundled-x*-mirror4.json``). "auto" (the default) mirrors only the
# sides that are flat (:func:`~.engine.flat_sides`: a logo's background, a screenshot's
# margin), which removes the rim where it shows and leaves photographs' other sides to the
# network as trained (``campaign/results/bundled-x*-mirror-auto.json``). 0 runs the network
# on the image alone, as the authors' code does (``seemore eval``'s default: the literature's
# protocol).
MIRROR = "auto"
MIRROR_GRAPHICS = 4  # pixels mirrored on a flat side
MIRROR_MAX = 64  # the widest frame asked for (pixels)
