"""Size limits on untrusted input, checked before anything is decoded or allocated.

A message, file or string that claims more than these is refused with a clear error (never
decoded into memory first). They are far above what any supported camera, panorama or map needs:

- :data:`MAX_IMAGE_SIDE_PX`, :data:`MAX_IMAGE_PIXELS`: the width / height and area of a camera image
  (raw ``Image``, the header of a PNG / JPEG ``CompressedImage``) and of a camera model
  (``CameraInfo``, calibration YAML). 16384 px a side, 64 Mpx.
- :data:`MAX_PANORAMA_PIXELS`: an equirectangular panorama or depth image read from a panorama set
  (its header is read first): 512 Mpx (a 32768x16384 panorama).
- :data:`MAX_DEPTH_TEXT_BYTES`, :data:`MAX_DEPTH_DECODED_BYTES`: a Street View ``depth_map`` string
  or its XML, before and after base64 + zlib decoding. Real depth maps are about 0.1-0.5 MB
  decoded (a 512x256 plane index plus the planes).
"""

from __future__ import annotations

MAX_IMAGE_SIDE_PX = 16384
MAX_IMAGE_PIXELS = 64 * 1024 * 1024
MAX_PANORAMA_PIXELS = 512 * 1024 * 1024
MAX_DEPTH_TEXT_BYTES = 16 * 1024 * 1024
MAX_DEPTH_DECODED_BYTES = 16 * 1024 * 1024


def image_size_problem(
    width: int, height: int, max_side: int = MAX_IMAGE_SIDE_PX, max_pixels: int = MAX_IMAGE_PIXELS
) -> str | None:
    """Why a ``width`` x ``height`` image is refused, or None when it is within the limits."""
    if width <= 0 or height <= 0:
        return f"size {width}x{height} is empty"
    if width > max_side or height > max_side:
        return f"size {width}x{height} exceeds the limit of {max_side} px a side"
    if width * height > max_pixels:
        return f"size {width}x{height} exceeds the limit of {max_pixels} pixels"
    return None
