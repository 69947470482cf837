"""Mapper-side levers that run on pycolmap models after (or instead of) incremental mapping.

One module per concern, each a function over pycolmap objects and the cached features / verified h5:

- :mod:`imc.sfm.data`      the verified two-view matches of a scene, keyed by image pair
- :mod:`imc.sfm.checks`    flag registered images whose pose disagrees with their verified pairs
- :mod:`imc.sfm.localize`  2D-3D correspondences from verified matches, absolute pose, re-registration
- :mod:`imc.sfm.cameras`   EXIF focal priors and camera grouping (``cameras.mode``)
- :mod:`imc.sfm.merge`     similarity from anchor images that bring a sub-model into the largest
- :mod:`imc.sfm.twoview`   two-view poses for images no model holds
- :mod:`imc.sfm.mapping`   incremental or global mapping, with retries
- :mod:`imc.sfm.oracle`    research: a mapped scene against its ground-truth poses, re-triangulated and adjusted
                           (``python -m imc oracle``)
- :mod:`imc.sfm.refine`    ``refine_models``: the post-mapping chain called by ``imc/reconstruct.py`` (flagged
                           images re-posed, the pairs found wrong handed back for ``sfm.checks.remap``)
"""
