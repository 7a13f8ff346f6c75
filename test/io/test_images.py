"""Image message conversion, checked against rosbags-image (an independent implementation)."""

from types import SimpleNamespace

import cv2
import numpy as np
import pytest
from rosbags.image import compressed_image_to_cvimage, image_to_cvimage

from geoloc_ros.io.errors import ImageConversionError
from geoloc_ros.io.images import (
    RAW_ENCODINGS,
    array_to_compressed_fields,
    array_to_image_fields,
    compressed_msg_to_array,
    image_msg_to_array,
    message_to_array,
)


def random_image(encoding: str, height: int = 7, width: int = 5) -> np.ndarray:
    channels, dtype = RAW_ENCODINGS[encoding]
    width += width % 2 if channels == 2 else 0  # 4:2:2 YUV: two pixels share a chroma
    rng = np.random.default_rng(hash(encoding) % 2**32)
    shape = (height, width) if channels == 1 else (height, width, channels)
    return rng.integers(0, np.iinfo(dtype).max, size=shape, dtype=dtype, endpoint=True)


def as_msg(fields: dict, **overrides) -> SimpleNamespace:
    fields = dict(fields)
    fields.update(overrides)
    return SimpleNamespace(**fields)


@pytest.mark.parametrize("encoding", sorted(RAW_ENCODINGS))
def test_round_trip_matches_rosbags_image(encoding):
    image = random_image(encoding)
    msg = as_msg(array_to_image_fields(image, encoding))
    ours = image_msg_to_array(msg)
    assert ours.dtype == image.dtype and np.array_equal(ours, image)
    assert np.array_equal(ours, image_to_cvimage(msg))


@pytest.mark.parametrize("encoding", sorted(RAW_ENCODINGS))
def test_padded_step_is_honoured(encoding):
    image = random_image(encoding, 6, 9)
    fields = array_to_image_fields(image, encoding)
    row = fields["step"]
    padded_step = row + 13  # odd padding, as some drivers produce
    rows = fields["data"].reshape(fields["height"], row)
    padding = np.full((fields["height"], 13), 0xAB, dtype=np.uint8)
    padded = np.hstack([rows, padding]).reshape(-1)
    ours = image_msg_to_array(as_msg(fields, step=padded_step, data=padded.tobytes()))
    # rosbags-image ignores step, so compare with its decoding of the unpadded message.
    assert np.array_equal(ours, image_to_cvimage(as_msg(fields)))


def test_mono16_big_endian():
    image = random_image("mono16", 4, 6)
    big = image.astype(">u2").tobytes()
    msg = SimpleNamespace(height=4, width=6, encoding="mono16", is_bigendian=1, step=12, data=big)
    ours = image_msg_to_array(msg)
    assert ours.dtype == np.uint16 and ours.dtype.byteorder in ("=", "<", "|")
    assert np.array_equal(ours, image)
    assert np.array_equal(ours, image_to_cvimage(msg))
    # Big-endian with padding too.
    padded = np.hstack([np.frombuffer(big, np.uint8).reshape(4, 12), np.zeros((4, 4), np.uint8)]).tobytes()
    assert np.array_equal(
        image_msg_to_array(SimpleNamespace(**{**msg.__dict__, "step": 16, "data": padded})), image
    )


@pytest.mark.parametrize("source", ["rgb8", "bgra8", "rgba8", "mono8", "mono16"])
def test_conversion_to_bgr8_matches_rosbags_image(source):
    image = random_image(source)
    msg = as_msg(array_to_image_fields(image, source))
    ours = image_msg_to_array(msg, "bgr8").astype(int)
    reference = image_to_cvimage(msg, "bgr8").astype(int)
    # mono16 -> 8 bit: we round like cv_bridge, rosbags-image truncates, so they may differ by one level.
    assert np.abs(ours - reference).max() <= (1 if source == "mono16" else 0)


def test_data_as_list_and_array_array():
    import array

    image = random_image("bgr8")
    fields = array_to_image_fields(image, "bgr8")
    for data in (list(fields["data"]), array.array("B", fields["data"].tobytes()), bytes(fields["data"])):
        assert np.array_equal(image_msg_to_array(as_msg(fields, data=data)), image)


def test_decoded_array_does_not_alias_message():
    image = random_image("mono8")
    fields = array_to_image_fields(image, "mono8")
    out = image_msg_to_array(as_msg(fields))
    out[:] = 0
    assert fields["data"].any()


@pytest.mark.parametrize(
    "source", ["yuv422", "yuv422_yuy2", "bayer_rggb8", "bayer_bggr8", "bayer_gbrg8", "bayer_grbg8"]
)
@pytest.mark.parametrize("target", ["bgr8", "rgb8", "mono8"])
def test_usb_and_machine_vision_encodings_decode_as_rosbags_image(source, target):
    msg = as_msg(array_to_image_fields(random_image(source, 6, 8), source))
    ours = image_msg_to_array(msg, target)
    assert np.array_equal(ours, image_to_cvimage(msg, target))


def test_a_bayer_mosaic_and_a_yuv422_frame_of_one_colour_decode_to_it():
    """Independently of any other decoder: each pattern's sites sampled from one BGR colour."""
    b, g, r = 50, 100, 200
    sites = {"bayer_rggb8": (r, g, g, b), "bayer_bggr8": (b, g, g, r), "bayer_gbrg8": (g, b, r, g)}
    sites["bayer_grbg8"] = (g, r, b, g)
    for encoding, (top_left, top_right, bottom_left, bottom_right) in sites.items():
        mosaic = np.zeros((8, 8), np.uint8)
        mosaic[0::2, 0::2], mosaic[0::2, 1::2] = top_left, top_right
        mosaic[1::2, 0::2], mosaic[1::2, 1::2] = bottom_left, bottom_right
        decoded = image_msg_to_array(as_msg(array_to_image_fields(mosaic, encoding)), "bgr8")
        assert decoded[2:6, 2:6].reshape(-1, 3).tolist() == [[b, g, r]] * 16, encoding
    # BT.601 video range, as V4L2 cameras deliver it.
    y = round(16 + (65.481 * r + 128.553 * g + 24.966 * b) / 255)
    u = round(128 + (-37.797 * r - 74.203 * g + 112.0 * b) / 255)
    v = round(128 + (112.0 * r - 93.786 * g - 18.214 * b) / 255)
    uyvy = np.zeros((4, 8, 2), np.uint8)
    uyvy[:, :, 1], uyvy[:, 0::2, 0], uyvy[:, 1::2, 0] = y, u, v
    for encoding, frame in (("yuv422", uyvy), ("yuv422_yuy2", uyvy[:, :, ::-1].copy())):
        decoded = image_msg_to_array(as_msg(array_to_image_fields(frame, encoding)), "bgr8").astype(int)
        assert np.abs(decoded - [b, g, r]).max() <= 1, encoding
    odd = as_msg(array_to_image_fields(np.zeros((2, 3, 2), np.uint8), "yuv422"))
    with pytest.raises(ImageConversionError, match="odd width 3"):
        image_msg_to_array(odd)


@pytest.mark.parametrize("encoding", ["yuv422_weird", "bayer_rggb16", "32FC1", ""])
def test_unsupported_encoding_named(encoding):
    msg = SimpleNamespace(height=2, width=2, encoding=encoding, is_bigendian=0, step=4, data=bytes(8))
    with pytest.raises(ImageConversionError, match=f"unsupported image encoding '{encoding}'"):
        image_msg_to_array(msg)


def test_truncated_data_is_reported():
    fields = array_to_image_fields(random_image("bgr8", 10, 10), "bgr8")
    with pytest.raises(
        ImageConversionError, match=r"truncated: 299 bytes, expected step x height = 30 x 10 = 300"
    ):
        image_msg_to_array(as_msg(fields, data=fields["data"][:299]))


def test_bad_step_and_empty_image():
    fields = array_to_image_fields(random_image("bgr8", 4, 4), "bgr8")
    with pytest.raises(ImageConversionError, match="step 10 is smaller than"):
        image_msg_to_array(as_msg(fields, step=10))
    with pytest.raises(ImageConversionError, match="empty"):
        image_msg_to_array(as_msg(fields, height=0))


def test_encoding_mismatch_on_write():
    with pytest.raises(ImageConversionError, match="needs a uint16 array"):
        array_to_image_fields(np.zeros((2, 2), np.uint8), "mono16")
    with pytest.raises(ImageConversionError, match="needs shape"):
        array_to_image_fields(np.zeros((2, 2), np.uint8), "bgr8")


@pytest.mark.parametrize("fmt", ["jpeg", "png", "bgr8; jpeg compressed bgr8", "rgb8; png compressed bgr8"])
def test_compressed_round_trip_matches_rosbags_image(fmt):
    rng = np.random.default_rng(0)
    image = cv2.GaussianBlur(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8), (5, 5), 0)
    fields = array_to_compressed_fields(image, fmt, quality=95)
    msg = SimpleNamespace(format=fmt, data=fields["data"])
    ours = compressed_msg_to_array(msg)
    assert ours.shape == image.shape
    assert np.array_equal(ours, compressed_image_to_cvimage(msg))
    tolerance = 0 if "png" in fmt else 8.0
    assert np.abs(ours.astype(float) - image).mean() <= tolerance
    assert np.array_equal(message_to_array(msg), ours)


def test_compressed_mono16_png():
    image = random_image("mono16", 8, 8)
    fields = array_to_compressed_fields(image, "png")
    assert np.array_equal(compressed_msg_to_array(SimpleNamespace(format="png", data=fields["data"])), image)


def test_compressed_errors():
    with pytest.raises(ImageConversionError, match="unsupported compressed image format 'tiff'"):
        compressed_msg_to_array(SimpleNamespace(format="tiff", data=b"123"))
    with pytest.raises(ImageConversionError, match="compressedDepth"):
        compressed_msg_to_array(SimpleNamespace(format="16UC1; compressedDepth", data=b"123"))
    with pytest.raises(ImageConversionError, match="no data"):
        compressed_msg_to_array(SimpleNamespace(format="jpeg", data=b""))
    with pytest.raises(ImageConversionError, match="cannot decode compressed image data"):
        compressed_msg_to_array(SimpleNamespace(format="jpeg", data=b"not a jpeg at all"))


# ------------------------------------------------------------------ sizes bounded before decoding
def _with_claimed_size(data: bytes, fmt: str, width: int, height: int) -> bytes:
    """``data`` (a PNG or JPEG) with its header patched to claim ``width`` x ``height``."""
    buf = bytearray(data)
    if fmt == "png":
        buf[16:20], buf[20:24] = width.to_bytes(4, "big"), height.to_bytes(4, "big")
    else:
        sof = next(i for i in range(2, len(buf) - 1) if buf[i] == 0xFF and buf[i + 1] in (0xC0, 0xC2))
        buf[sof + 5 : sof + 7], buf[sof + 7 : sof + 9] = height.to_bytes(2, "big"), width.to_bytes(2, "big")
    return bytes(buf)


@pytest.mark.parametrize("fmt", ["png", "jpeg"])
def test_encoded_image_size_reads_the_header(fmt):
    from geoloc_ros.io.images import encoded_image_size

    fields = array_to_compressed_fields(np.zeros((48, 64, 3), np.uint8), fmt)
    assert encoded_image_size(bytes(fields["data"])) == (64, 48)
    assert encoded_image_size(fields["data"]) == (64, 48)


@pytest.mark.parametrize("fmt", ["png", "jpeg"])
def test_header_claiming_a_huge_image_is_refused_before_decoding(fmt, monkeypatch):
    data = bytes(array_to_compressed_fields(np.zeros((8, 8, 3), np.uint8), fmt)["data"])
    bomb = _with_claimed_size(data, fmt, 40000, 40000)
    decoded = []
    monkeypatch.setattr(cv2, "imdecode", lambda *a: decoded.append(a))
    with pytest.raises(ImageConversionError, match="exceeds the limit"):
        compressed_msg_to_array(SimpleNamespace(format=fmt, data=bomb))
    assert not decoded  # refused from the header alone


@pytest.mark.parametrize(
    "data, match",
    [
        (b"\x89PNG\r\n\x1a\n\x00\x00", "truncated"),
        (b"\xff\xd8\xff\xda\x00\x02", "no frame size"),
        (b"\xff\xd8\x00\x00\x00\x00", "malformed"),
        (b"GIF89a" + bytes(20), "neither PNG nor JPEG"),
    ],
)
def test_malformed_headers_are_named(data, match):
    with pytest.raises(ImageConversionError, match=match):
        compressed_msg_to_array(SimpleNamespace(format="png", data=data))


@pytest.mark.parametrize("size", [(100000, 1), (1, 100000000), (20000, 20000)])
def test_raw_image_beyond_the_limits_is_refused(size):
    width, height = size
    msg = SimpleNamespace(
        encoding="mono8", width=width, height=height, step=width, is_bigendian=0, data=b"\0" * 16
    )
    with pytest.raises(ImageConversionError, match="exceeds the limit"):
        image_msg_to_array(msg)
