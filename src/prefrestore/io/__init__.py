"""Image and file I/O shared by inference, training and evaluation: ``image`` (array conversions, image files),
``photo_io`` (photos with bit depth, alpha, ICC profile and EXIF kept) and ``io_safety`` (safe writes, input and
output checks, one-line errors).
"""
