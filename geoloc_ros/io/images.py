"""``sensor_msgs/Image`` and ``sensor_msgs/CompressedImage`` <-> numpy, without cv_bridge.

Duck-typed: works with rclpy messages, rosbags dataclasses or any object with the same fields, so
this module imports no ROS package. Raw images honour ``step`` (row padding) and
``is_bigendian``; compressed images are decoded with OpenCV. Colour arrays are BGR (OpenCV order)
unless an RGB encoding is asked for explicitly.

Sizes are bounded before decoding (:mod:`geoloc_ros.limits`): a raw image's width and height, and
the dimensions a PNG / JPEG header claims, are checked before any pixel is allocated.

Supported raw encodings: rgb8, bgr8, rgba8, bgra8, mono8, mono16 (and their aliases 8UC1, 8UC3,
8UC4, 16UC1), the 4:2:2 YUV of USB cameras (yuv422 = UYVY, yuv422_yuy2 = YUYV) and the 8-bit Bayer
mosaics of machine-vision cameras (bayer_rggb8, bayer_bggr8, bayer_gbrg8, bayer_grbg8), converted with
cv_bridge's OpenCV codes. Compressed formats: jpeg and png, including image_transport's
``"<encoding>; jpeg compressed bgr8"`` form.
"""

from __future__ import annotations

import sys
from typing import Any

import cv2
import numpy as np

from geoloc_ros.io.errors import ImageConversionError
from geoloc_ros.limits import MAX_IMAGE_PIXELS, MAX_IMAGE_SIDE_PX, image_size_problem

# encoding -> (channels, numpy dtype name)
RAW_ENCODINGS: dict[str, tuple[int, str]] = {
    "rgb8": (3, "uint8"),
    "bgr8": (3, "uint8"),
    "rgba8": (4, "uint8"),
    "bgra8": (4, "uint8"),
    "mono8": (1, "uint8"),
    "mono16": (1, "uint16"),
    "yuv422": (2, "uint8"),  # UYVY: U Y0 V Y1
    "yuv422_yuy2": (2, "uint8"),  # YUYV: Y0 U Y1 V
    "bayer_rggb8": (1, "uint8"),
    "bayer_bggr8": (1, "uint8"),
    "bayer_gbrg8": (1, "uint8"),
    "bayer_grbg8": (1, "uint8"),
}
_YUV422 = ("yuv422", "yuv422_yuy2")  # two pixels share their chroma: the width is even
_ALIASES = {"8UC1": "mono8", "8UC3": "bgr8", "8UC4": "bgra8", "16UC1": "mono16"}
# What a desired_encoding may be when converting on read.
OUTPUT_ENCODINGS = ("passthrough", "bgr8", "rgb8", "mono8")
COMPRESSED_FORMATS = ("jpeg", "png")

# cv2 colour conversion codes from a source encoding to a target encoding.
_COLOR_CODES: dict[tuple[str, str], int] = {
    ("rgb8", "bgr8"): cv2.COLOR_RGB2BGR,
    ("rgba8", "bgr8"): cv2.COLOR_RGBA2BGR,
    ("bgra8", "bgr8"): cv2.COLOR_BGRA2BGR,
    ("mono8", "bgr8"): cv2.COLOR_GRAY2BGR,
    ("bgr8", "rgb8"): cv2.COLOR_BGR2RGB,
    ("rgba8", "rgb8"): cv2.COLOR_RGBA2RGB,
    ("bgra8", "rgb8"): cv2.COLOR_BGRA2RGB,
    ("mono8", "rgb8"): cv2.COLOR_GRAY2RGB,
    ("rgb8", "mono8"): cv2.COLOR_RGB2GRAY,
    ("bgr8", "mono8"): cv2.COLOR_BGR2GRAY,
    ("rgba8", "mono8"): cv2.COLOR_RGBA2GRAY,
    ("bgra8", "mono8"): cv2.COLOR_BGRA2GRAY,
}
# The 4:2:2 YUV and Bayer encodings -> the OpenCV codes to bgr8, rgb8, mono8 (cv_bridge's, and
# rosbags-image's: OpenCV names a Bayer pattern by its second row, rggb8 is "BayerBG").
_DECODING_CODES = {
    "yuv422": ("YUV2BGR_UYVY", "YUV2RGB_UYVY", "YUV2GRAY_UYVY"),
    "yuv422_yuy2": ("YUV2BGR_YUY2", "YUV2RGB_YUY2", "YUV2GRAY_YUY2"),
    "bayer_rggb8": ("BayerBG2BGR", "BayerBG2RGB", "BayerBG2GRAY"),
    "bayer_bggr8": ("BayerRG2BGR", "BayerRG2RGB", "BayerRG2GRAY"),
    "bayer_gbrg8": ("BayerGR2BGR", "BayerGR2RGB", "BayerGR2GRAY"),
    "bayer_grbg8": ("BayerGB2BGR", "BayerGB2RGB", "BayerGB2GRAY"),
}
_COLOR_CODES.update(
    {
        (encoding, target): getattr(cv2, f"COLOR_{name}")
        for encoding, names in _DECODING_CODES.items()
        for target, name in zip(("bgr8", "rgb8", "mono8"), names, strict=True)
    }
)


def canonical_encoding(encoding: str) -> str:
    """The canonical name of a supported raw encoding, or a clear error naming it."""
    enc = _ALIASES.get(encoding, encoding)
    if enc not in RAW_ENCODINGS:
        supported = ", ".join([*RAW_ENCODINGS, *_ALIASES])
        raise ImageConversionError(f"unsupported image encoding {encoding!r} (supported: {supported})")
    return enc


def _as_byte_array(data: Any) -> np.ndarray:
    """View a message's ``data`` field (bytes, array.array, list or ndarray) as a flat uint8 array."""
    if isinstance(data, np.ndarray):
        return (
            data.reshape(-1).view(np.uint8) if data.dtype.itemsize == 1 else data.astype(np.uint8).reshape(-1)
        )
    if isinstance(data, (bytes, bytearray, memoryview)):
        return np.frombuffer(data, dtype=np.uint8)
    if hasattr(data, "tobytes"):  # array.array('B') from rclpy
        return np.frombuffer(data.tobytes(), dtype=np.uint8)
    return np.asarray(data, dtype=np.uint8).reshape(-1)


def image_msg_to_array(msg: Any, desired_encoding: str | None = None) -> np.ndarray:
    """Decode a raw ``sensor_msgs/Image``.

    ``desired_encoding`` None or ``"passthrough"`` returns the data as encoded (``(H, W)`` for mono,
    ``(H, W, C)`` otherwise, native byte order); ``"bgr8"``, ``"rgb8"`` or ``"mono8"`` converts
    (mono16 is scaled by 255/65535, rounded, like cv_bridge). The result never aliases the message buffer.
    """
    encoding = canonical_encoding(str(msg.encoding))
    channels, dtype_name = RAW_ENCODINGS[encoding]
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    if height <= 0 or width <= 0:
        raise ImageConversionError(f"image is empty ({width}x{height})")
    if encoding in _YUV422 and width % 2:
        raise ImageConversionError(f"{encoding} image has an odd width {width} (two pixels share a chroma)")
    problem = image_size_problem(width, height)
    if problem is not None:
        raise ImageConversionError(f"image {problem}")
    bytes_per_pixel = channels * np.dtype(dtype_name).itemsize
    row_bytes = width * bytes_per_pixel
    if step < row_bytes:
        raise ImageConversionError(
            f"image step {step} is smaller than width x bytes per pixel = "
            f"{width} x {bytes_per_pixel} = {row_bytes}"
        )
    raw = _as_byte_array(msg.data)
    if raw.size < step * height:
        raise ImageConversionError(
            f"image data is truncated: {raw.size} bytes, "
            f"expected step x height = {step} x {height} = {step * height}"
        )
    rows = raw[: step * height].reshape(height, step)[:, :row_bytes]
    dtype = np.dtype(dtype_name)
    if dtype.itemsize > 1:
        dtype = dtype.newbyteorder(">" if msg.is_bigendian else "<")
    pixels = np.ascontiguousarray(rows).view(dtype).reshape(height, width, channels)
    array = pixels.astype(dtype_name, copy=True)  # native byte order, own buffer
    if channels == 1:
        array = array[:, :, 0]
    return convert_encoding(array, encoding, desired_encoding)


def convert_encoding(array: np.ndarray, encoding: str, desired_encoding: str | None) -> np.ndarray:
    """Convert an array holding ``encoding`` pixels to ``desired_encoding`` (see module doc)."""
    if desired_encoding in (None, "passthrough"):
        return array
    if desired_encoding not in OUTPUT_ENCODINGS:
        raise ImageConversionError(
            f"unsupported desired encoding {desired_encoding!r} (supported: {', '.join(OUTPUT_ENCODINGS)})"
        )
    encoding = canonical_encoding(encoding)
    if encoding == "mono16":
        # Same scaling as cv_bridge (convertTo with 255/65535, rounded).
        array = cv2.convertScaleAbs(array, alpha=255.0 / 65535.0)
        encoding = "mono8"
    if encoding == desired_encoding:
        return array
    return cv2.cvtColor(array, _COLOR_CODES[(encoding, desired_encoding)])


def array_to_image_fields(array: np.ndarray, encoding: str = "bgr8") -> dict[str, Any]:
    """Fields of a ``sensor_msgs/Image`` (without header) holding ``array`` in ``encoding``.

    ``data`` is a flat uint8 array; assign it to an rclpy message or pass it to a rosbags dataclass.
    """
    enc = canonical_encoding(encoding)
    channels, dtype_name = RAW_ENCODINGS[enc]
    a = np.asarray(array)
    if a.dtype != np.dtype(dtype_name):
        raise ImageConversionError(f"encoding {enc} needs a {dtype_name} array, got {a.dtype}")
    expected_ndim = 2 if channels == 1 else 3
    if a.ndim == 3 and channels == 1 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.ndim != expected_ndim or (channels > 1 and a.shape[2] != channels):
        raise ImageConversionError(
            f"encoding {enc} needs shape (H, W{f', {channels}' if channels > 1 else ''}), got {a.shape}"
        )
    if a.shape[0] == 0 or a.shape[1] == 0:
        raise ImageConversionError(f"cannot encode an empty image of shape {a.shape}")
    height, width = a.shape[:2]
    contiguous = np.ascontiguousarray(a)
    return {
        "height": height,
        "width": width,
        "encoding": enc,
        "is_bigendian": int(sys.byteorder == "big" and contiguous.dtype.itemsize > 1),
        "step": width * channels * contiguous.dtype.itemsize,
        "data": contiguous.view(np.uint8).reshape(-1),
    }


def compressed_format_kind(fmt: str) -> str:
    """``"jpeg"`` or ``"png"`` from a CompressedImage ``format`` string, or a clear error."""
    text = str(fmt).lower()
    if "compresseddepth" in text:
        raise ImageConversionError(
            f"unsupported compressed format {fmt!r} (compressedDepth is not supported)"
        )
    for kind in COMPRESSED_FORMATS:
        if kind in text or (kind == "jpeg" and "jpg" in text):
            return kind
    raise ImageConversionError(f"unsupported compressed image format {fmt!r} (supported: jpeg, png)")


# JPEG start-of-frame markers (they carry the image size); C4, C8 and CC are not SOF markers.
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_HEADER_SCAN_BYTES = 1 << 20  # JPEG metadata segments (EXIF, ICC) before the frame header
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def encoded_image_size(data: bytes | np.ndarray) -> tuple[int, int]:
    """``(width, height)`` that a PNG or JPEG header claims, read without decoding any pixel."""
    head = (
        bytes(data[:_HEADER_SCAN_BYTES])
        if isinstance(data, (bytes, bytearray))
        else _as_byte_array(data)[:_HEADER_SCAN_BYTES].tobytes()
    )
    if head.startswith(_PNG_SIGNATURE):
        if len(head) < 24 or head[12:16] != b"IHDR":
            raise ImageConversionError("PNG header is truncated (no IHDR chunk)")
        return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")
    if head.startswith(b"\xff\xd8"):
        i = 2
        while i + 4 <= len(head):
            if head[i] != 0xFF:
                raise ImageConversionError(f"JPEG header is malformed (no marker at byte {i})")
            marker = head[i + 1]
            if marker == 0xFF:  # fill byte
                i += 1
                continue
            if marker == 0x01 or 0xD0 <= marker <= 0xD8:  # markers without a length
                i += 2
                continue
            if marker in {0xDA, 0xD9}:  # start of scan, end of image
                break
            length = int.from_bytes(head[i + 2 : i + 4], "big")
            if marker in _JPEG_SOF:
                if i + 9 > len(head):
                    break
                height = int.from_bytes(head[i + 5 : i + 7], "big")
                width = int.from_bytes(head[i + 7 : i + 9], "big")
                return width, height
            if length < 2:
                raise ImageConversionError(f"JPEG header is malformed (segment length {length})")
            i += 2 + length
        raise ImageConversionError("JPEG header carries no frame size (no SOF marker before the data)")
    raise ImageConversionError(
        "cannot decode compressed image data: neither PNG nor JPEG (unknown signature)"
    )


def check_encoded_image_size(
    data: bytes | np.ndarray, max_side: int = MAX_IMAGE_SIDE_PX, max_pixels: int = MAX_IMAGE_PIXELS
) -> tuple[int, int]:
    """The header's ``(width, height)``, or :class:`ImageConversionError` when beyond the limits."""
    width, height = encoded_image_size(data)
    problem = image_size_problem(width, height, max_side, max_pixels)
    if problem is not None:
        raise ImageConversionError(f"compressed image header claims {problem}")
    return width, height


def compressed_msg_to_array(msg: Any, desired_encoding: str | None = None) -> np.ndarray:
    """Decode a ``sensor_msgs/CompressedImage`` to BGR (colour), mono8 or mono16 (16-bit PNG).

    The size in the PNG / JPEG header is checked against :mod:`geoloc_ros.limits` first.
    """
    compressed_format_kind(msg.format)
    raw = _as_byte_array(msg.data)
    if raw.size == 0:
        raise ImageConversionError(f"compressed image ({msg.format}) has no data")
    check_encoded_image_size(raw)
    image = cv2.imdecode(raw, cv2.IMREAD_UNCHANGED)
    if image is None:
        raise ImageConversionError(
            f"cannot decode compressed image data ({raw.size} bytes, format {msg.format!r})"
        )
    if image.ndim == 3 and image.shape[2] == 4:
        encoding = "bgra8"
    elif image.ndim == 3:
        encoding = "bgr8"
    else:
        encoding = "mono16" if image.dtype == np.uint16 else "mono8"
    return convert_encoding(image, encoding, desired_encoding)


def array_to_compressed_fields(array: np.ndarray, fmt: str = "jpeg", quality: int = 90) -> dict[str, Any]:
    """Fields of a ``sensor_msgs/CompressedImage`` (without header): BGR/mono array -> jpeg or png."""
    kind = compressed_format_kind(fmt)
    a = np.asarray(array)
    if a.size == 0:
        raise ImageConversionError(f"cannot compress an empty image of shape {a.shape}")
    if kind == "jpeg":
        if a.dtype != np.uint8:
            raise ImageConversionError(f"jpeg needs a uint8 array, got {a.dtype}")
        ok, buf = cv2.imencode(".jpg", a, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    else:
        ok, buf = cv2.imencode(".png", a)
    if not ok:
        raise ImageConversionError(f"OpenCV failed to encode a {a.shape} {a.dtype} image as {kind}")
    return {"format": kind, "data": buf.reshape(-1)}


def message_to_array(msg: Any, desired_encoding: str | None = "bgr8") -> np.ndarray:
    """Decode either message type (CompressedImage has ``format``, Image has ``encoding``)."""
    if hasattr(msg, "format") and not hasattr(msg, "encoding"):
        return compressed_msg_to_array(msg, desired_encoding)
    return image_msg_to_array(msg, desired_encoding)
