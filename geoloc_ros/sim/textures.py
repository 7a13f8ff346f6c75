"""Procedural textures of the synthetic town (façades, posters, vehicles, people, trees, signs).

Every generator takes a ``numpy.random.Generator`` seeded by the caller from (scenario seed, object
id), so a texture is the same whatever order views are rendered in. Outputs are BGR uint8 images,
or BGRA where the shape is a cut-out (alpha 0 = transparent). Photographic content (brick, grass,
gravel, poster photos) comes from the CC0 / public-domain images in ``sim/assets`` (see its README).

:class:`TexturePyramid` holds a texture as a mip pyramid of padded BGRA levels, the form the
renderer warps: one replicated texel of padding with alpha 0 around each level puts the alpha
0.5 crossing exactly on the quad's edge and keeps edge colours from bleeding to black.

**Why one module of ~900 lines.** One generator function per texture family (façades, posters,
vehicles, people, trees, signs) over shared helpers (noise, tiling, tint, pyramids); each function
is short and independent, and they are used together only by the town builder.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from importlib import resources

import cv2
import numpy as np

from geoloc_ros.sim.errors import SimError

ASSET_NAMES = (
    "brick",
    "grass",
    "gravel",
    "astronaut",
    "coffee",
    "chelsea",
    "rocket",
    "camera",
    "coins",
    "text",
    "hubble_deep_field",
)
POSTER_PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "camera", "coins", "hubble_deep_field")

SHOP_WORDS = (
    "BOULANGERIE",
    "PHARMACIE",
    "CAFE",
    "TABAC",
    "PRESSE",
    "OPTIQUE",
    "COIFFURE",
    "BISTRO",
    "LIBRAIRIE",
    "FLEURS",
    "PIZZERIA",
    "SUSHI",
    "BANQUE",
    "HOTEL",
    "MARCHE",
    "EPICERIE",
    "FROMAGERIE",
    "BOUCHERIE",
    "ELECTRO",
    "MODE",
    "CHAUSSURES",
    "IMMOBILIER",
    "ASSURANCES",
    "LAVERIE",
    "BAR",
    "RESTAURANT",
    "BIJOUX",
    "CREPERIE",
    "PATISSERIE",
    "VELOS",
    "TAPIS",
    "PHOTO",
    "TRAITEUR",
    "CAVE",
    "JOUETS",
    "MUSIQUE",
)
NAME_WORDS = (
    "MARTIN",
    "DUBOIS",
    "LEROY",
    "MOREAU",
    "SIMON",
    "LAURENT",
    "MICHEL",
    "GARCIA",
    "DAVID",
    "BERTRAND",
    "ROUX",
    "VINCENT",
    "FOURNIER",
    "MOREL",
    "GIRARD",
    "ANDRE",
    "MERCIER",
    "BLANC",
    "GUERIN",
    "BOYER",
    "LUNA",
    "SOLEIL",
    "ETOILE",
    "CENTRAL",
    "DU PARC",
    "DE LA GARE",
    "DU MARCHE",
    "MODERNE",
    "ROYAL",
)
POSTER_WORDS = (
    "SALE",
    "CONCERT",
    "EXPO",
    "FESTIVAL",
    "OPEN",
    "NEW",
    "CINEMA",
    "THEATRE",
    "MUSEE",
    "JAZZ",
    "SOLDES",
    "-30%",
    "-50%",
    "LIVE",
    "TOUR",
    "2024",
    "2019",
    "NIGHT",
    "SUMMER",
    "MARATHON",
    "SPORT",
    "VOTE",
)
STREET_WORDS = (
    "RUE",
    "AVENUE",
    "BOULEVARD",
    "ALLEE",
    "QUAI",
    "PLACE",
    "IMPASSE",
    "CHEMIN",
)


# --------------------------------------------------------------------------------------- helpers
@functools.cache
def load_asset(name: str) -> np.ndarray:
    """A bundled photo as BGR uint8 (grey photos are expanded to three channels)."""
    if name not in ASSET_NAMES:
        raise SimError(f"unknown texture asset {name!r} (bundled: {', '.join(ASSET_NAMES)})")
    data = (resources.files("geoloc_ros.sim") / "assets" / f"{name}.jpg").read_bytes()
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise SimError(f"bundled texture asset {name}.jpg cannot be decoded")
    image.setflags(write=False)
    return image


def value_noise(
    rng: np.random.Generator, height: int, width: int, cell_px: float, octaves: int = 3
) -> np.ndarray:
    """Smooth fractal noise in [-1, 1] (float32, ``(H, W)``): cubic-upsampled random grids."""
    out = np.zeros((height, width), np.float32)
    amplitude, total = 1.0, 0.0
    cell = max(float(cell_px), 1.0)
    for _ in range(octaves):
        gh = max(2, math.ceil(height / cell) + 2)
        gw = max(2, math.ceil(width / cell) + 2)
        grid = rng.uniform(-1.0, 1.0, (gh, gw)).astype(np.float32)
        up = cv2.resize(grid, (int(gw * cell), int(gh * cell)), interpolation=cv2.INTER_CUBIC)
        out += amplitude * up[:height, :width]
        total += amplitude
        amplitude *= 0.5
        cell = max(cell / 2.0, 1.0)
    return np.clip(out / total, -1.0, 1.0)


def tile_to(image: np.ndarray, height: int, width: int, offset: tuple[int, int] = (0, 0)) -> np.ndarray:
    """Repeat ``image`` to cover ``(height, width)``, starting at a pixel offset."""
    h, w = image.shape[:2]
    reps_y = height // h + 2
    reps_x = width // w + 2
    tiled = np.tile(image, (reps_y, reps_x) + (1,) * (image.ndim - 2))
    oy, ox = offset[0] % h, offset[1] % w
    return np.ascontiguousarray(tiled[oy : oy + height, ox : ox + width])


def tint(grey: np.ndarray, colour_bgr: tuple[float, float, float], contrast: float = 1.0) -> np.ndarray:
    """Colourise a grey texture around ``colour_bgr`` (float32 result, not clipped)."""
    g = grey.astype(np.float32)
    if g.ndim == 3:
        g = g.mean(axis=2)
    g = (g - g.mean()) / 128.0 * contrast + 1.0
    return g[..., None] * np.asarray(colour_bgr, np.float32)[None, None, :]


def _c(colour: np.ndarray | tuple[float, ...]) -> tuple[float, ...]:
    """A colour as a tuple of Python floats (what OpenCV drawing functions accept)."""
    return tuple(float(c) for c in np.asarray(colour).ravel())


def to_u8(image: np.ndarray) -> np.ndarray:
    return np.clip(image, 0, 255).astype(np.uint8)


def random_colour(
    rng: np.random.Generator, palette: tuple[tuple[int, int, int], ...]
) -> tuple[float, float, float]:
    base = np.asarray(palette[int(rng.integers(len(palette)))], np.float32)
    jitter = rng.normal(0.0, 8.0, 3)
    b, g, r = np.clip(base + jitter, 0, 255)
    return float(b), float(g), float(r)


def fit_text(
    image: np.ndarray,
    text: str,
    box: tuple[int, int, int, int],
    colour: tuple[float, ...],
    font: int,
    thickness_frac: float = 0.09,
) -> None:
    """Draw ``text`` centred in ``box = (x0, y0, x1, y1)``, as large as fits."""
    if image.dtype != np.uint8:
        raise SimError(f"text can only be drawn on uint8 images, got {image.dtype}")
    x0, y0, x1, y1 = box
    bw, bh = x1 - x0, y1 - y0
    if bw < 6 or bh < 6 or not text:
        return
    (tw, th), _ = cv2.getTextSize(text, font, 1.0, 1)
    scale = min(bw * 0.9 / max(tw, 1), bh * 0.7 / max(th, 1))
    if scale <= 0.05:
        return
    thickness = max(1, round(th * scale * thickness_frac))
    (tw, th), _ = cv2.getTextSize(text, font, scale, thickness)
    org = (int(x0 + (bw - tw) / 2), int(y0 + (bh + th) / 2))
    cv2.putText(image, text, org, font, scale, colour, thickness, cv2.LINE_AA)


# ------------------------------------------------------------------------------------- pyramids
@dataclass(frozen=True)
class TexturePyramid:
    """A texture as padded BGRA mip levels. ``levels[k]`` has ``1`` texel of padding each side;
    its interior is ``sizes[k] = (width_px, height_px)`` texels covering ``width_m x height_m``."""

    levels: tuple[np.ndarray, ...]
    sizes: tuple[tuple[int, int], ...]
    width_m: float
    height_m: float

    @property
    def nbytes(self) -> int:
        return sum(level.nbytes for level in self.levels)

    def texels_per_m(self, level: int) -> tuple[float, float]:
        w, h = self.sizes[level]
        return w / self.width_m, h / self.height_m


def _pad(bgra: np.ndarray) -> np.ndarray:
    padded = cv2.copyMakeBorder(bgra, 1, 1, 1, 1, cv2.BORDER_REPLICATE)
    padded[0, :, 3] = padded[-1, :, 3] = 0
    padded[:, 0, 3] = padded[:, -1, 3] = 0
    return padded


def make_pyramid(image: np.ndarray, width_m: float, height_m: float, min_size: int = 4) -> TexturePyramid:
    """Mip pyramid of a BGR or BGRA texture covering ``width_m x height_m`` metres."""
    if image.ndim != 3 or image.shape[2] not in (3, 4) or image.dtype != np.uint8:
        raise SimError(f"textures must be BGR/BGRA uint8, got {image.dtype} {image.shape}")
    bgra = cv2.cvtColor(image, cv2.COLOR_BGR2BGRA) if image.shape[2] == 3 else image
    levels = []
    sizes = []
    current = bgra
    while True:
        h, w = current.shape[:2]
        levels.append(_pad(current))
        sizes.append((w, h))
        if min(w, h) // 2 < min_size:
            break
        nw, nh = max(1, w // 2), max(1, h // 2)
        current = cv2.resize(current, (nw, nh), interpolation=cv2.INTER_AREA)
    for level in levels:
        level.setflags(write=False)
    return TexturePyramid(tuple(levels), tuple(sizes), float(width_m), float(height_m))


def canvas_size(width_m: float, height_m: float, px_per_m: float, max_px: int = 4096) -> tuple[int, int]:
    w = int(np.clip(round(width_m * px_per_m), 2, max_px))
    h = int(np.clip(round(height_m * px_per_m), 2, max_px))
    return w, h


# ---------------------------------------------------------------------------------------- façades
WALL_PALETTE = (
    (196, 214, 228),
    (170, 190, 210),
    (150, 170, 190),
    (200, 200, 200),
    (120, 140, 170),
    (180, 200, 225),
    (140, 150, 160),
    (205, 222, 236),
    (110, 120, 150),
    (160, 185, 200),
    (130, 160, 190),
    (185, 185, 170),
)
FRAME_PALETTE = ((235, 235, 235), (40, 40, 40), (60, 80, 110), (90, 110, 60), (120, 120, 120), (30, 60, 120))
SHOP_PALETTE = (
    (40, 40, 160),
    (150, 60, 30),
    (40, 120, 40),
    (20, 20, 20),
    (30, 140, 200),
    (120, 40, 120),
    (200, 160, 40),
    (230, 230, 230),
    (20, 90, 160),
)


@dataclass(frozen=True)
class FacadeStyle:
    """Per-building look, shared by its walls (drawn once in the town so walls match)."""

    material: str  # plaster | brick | stone | panel
    wall_bgr: tuple[float, float, float]
    frame_bgr: tuple[float, float, float]
    ground_floor_m: float
    floor_m: float
    window_w_m: float
    window_h_m: float
    window_spacing_m: float
    shutters: bool
    balconies: bool
    cornices: bool
    seed: int


def random_facade_style(rng: np.random.Generator) -> FacadeStyle:
    material = str(rng.choice(["plaster", "plaster", "brick", "stone", "panel"]))
    return FacadeStyle(
        material=material,
        wall_bgr=random_colour(rng, WALL_PALETTE),
        frame_bgr=random_colour(rng, FRAME_PALETTE),
        ground_floor_m=float(rng.uniform(3.6, 4.6)),
        floor_m=float(rng.uniform(2.8, 3.4)),
        window_w_m=float(rng.uniform(0.9, 1.6)),
        window_h_m=float(rng.uniform(1.3, 1.9)),
        window_spacing_m=float(rng.uniform(2.4, 3.6)),
        shutters=bool(rng.random() < 0.35),
        balconies=bool(rng.random() < 0.4),
        cornices=bool(rng.random() < 0.6),
        seed=int(rng.integers(2**31)),
    )


def _wall_base(rng: np.random.Generator, style: FacadeStyle, h: int, w: int, ppm: float) -> np.ndarray:
    if style.material == "brick":
        brick = load_asset("brick")
        scale = 1.8 * ppm / brick.shape[0]  # the photo spans about 1.8 m of wall
        size = (max(8, int(brick.shape[1] * scale)), max(8, int(brick.shape[0] * scale)))
        small = cv2.resize(brick, size, interpolation=cv2.INTER_AREA)
        colour = np.asarray(style.wall_bgr, np.float32) * np.array([0.55, 0.6, 0.95], np.float32)
        base = tint(
            tile_to(small, h, w, (int(rng.integers(999)), int(rng.integers(999)))), tuple(colour), 1.3
        )
    else:
        base = np.empty((h, w, 3), np.float32)
        base[:] = np.asarray(style.wall_bgr, np.float32)
        grain = value_noise(rng, h, w, max(2.0, ppm * 0.05), octaves=2)
        base *= (1.0 + 0.05 * grain)[..., None]
        if style.material == "stone":
            course = max(3, int(0.45 * ppm))
            block = max(6, int(0.9 * ppm))
            for row, y in enumerate(range(0, h, course)):
                cv2.line(
                    base, (0, y), (w, y), tuple(0.72 * c for c in style.wall_bgr), max(1, int(ppm * 0.02))
                )
                shift = (row % 2) * block // 2
                for x in range(-shift, w, block):
                    cv2.line(
                        base, (x, y), (x, min(h, y + course)), tuple(0.75 * c for c in style.wall_bgr), 1
                    )
        elif style.material == "panel":
            pw, ph = max(8, int(1.5 * ppm)), max(8, int(1.2 * ppm))
            for x in range(0, w, pw):
                cv2.line(
                    base, (x, 0), (x, h), tuple(0.6 * c for c in style.wall_bgr), max(1, int(ppm * 0.025))
                )
            for y in range(0, h, ph):
                cv2.line(
                    base, (0, y), (w, y), tuple(0.6 * c for c in style.wall_bgr), max(1, int(ppm * 0.025))
                )
    # Weathering: large blotches and vertical rain streaks.
    blotch = value_noise(rng, h, w, max(4.0, ppm * 2.0), octaves=3)
    streak = cv2.resize(
        value_noise(rng, 8, w, max(2.0, ppm * 0.4), octaves=2), (w, h), interpolation=cv2.INTER_LINEAR
    )
    base *= (1.0 + 0.10 * blotch + 0.06 * streak)[..., None]
    return base


def _window(
    rng: np.random.Generator,
    img: np.ndarray,
    x0: int,
    y0: int,
    x1: int,
    y1: int,
    style: FacadeStyle,
    ppm: float,
) -> None:
    frame = max(1, int(0.07 * ppm))
    cv2.rectangle(img, (x0, y0), (x1, y1), style.frame_bgr, -1)
    gx0, gy0, gx1, gy1 = x0 + frame, y0 + frame, x1 - frame, y1 - frame
    if gx1 <= gx0 or gy1 <= gy0:
        return
    gh, gw = gy1 - gy0, gx1 - gx0
    # Glass: dark interior with a sky reflection gradient, different for every window.
    top = np.array([rng.uniform(90, 170), rng.uniform(80, 150), rng.uniform(60, 120)], np.float32)
    bottom = top * rng.uniform(0.25, 0.55)
    ramp = np.linspace(0.0, 1.0, gh, dtype=np.float32)[:, None, None]
    glass = top * (1 - ramp) + bottom * ramp
    glass = np.broadcast_to(glass, (gh, gw, 3)).copy()
    kind = rng.random()
    if kind < 0.3:  # curtains
        curtain = random_colour(rng, ((220, 225, 230), (180, 200, 220), (150, 160, 200), (200, 220, 200)))
        cw = int(gw * rng.uniform(0.2, 0.45))
        glass[:, :cw] = curtain
        if rng.random() < 0.6:
            glass[:, gw - cw :] = curtain
    elif kind < 0.5:  # blinds
        pitch = max(2, int(0.08 * ppm))
        depth = int(gh * rng.uniform(0.3, 1.0))
        blind = np.array(random_colour(rng, ((210, 210, 210), (170, 190, 200), (120, 140, 160))), np.float32)
        glass[:depth] = blind
        glass[:depth:pitch] *= 0.7
    elif kind < 0.58:  # lit interior
        glass[:] = np.array([120, 200, 240], np.float32) * rng.uniform(0.7, 1.0)
    img[gy0:gy1, gx0:gx1] = glass
    # Mullions.
    bar = max(1, frame // 2)
    cx = (gx0 + gx1) // 2
    cv2.rectangle(img, (cx - bar, gy0), (cx + bar, gy1), style.frame_bgr, -1)
    if rng.random() < 0.5:
        cy = gy0 + gh // 3
        cv2.rectangle(img, (gx0, cy - bar), (gx1, cy + bar), style.frame_bgr, -1)
    if style.shutters:
        sw = (x1 - x0) // 2
        colour = tuple(float(c) for c in np.clip(np.asarray(style.frame_bgr) * 0.8 + 20, 0, 255))
        for sx0 in (x0 - sw, x1):
            cv2.rectangle(img, (sx0, y0), (sx0 + sw, y1), colour, -1)
            for y in range(y0, y1, max(2, int(0.06 * ppm))):
                cv2.line(img, (sx0, y), (sx0 + sw, y), tuple(0.7 * c for c in colour), 1)


def _shop_front(
    rng: np.random.Generator,
    img: np.ndarray,
    x0: int,
    x1: int,
    h_px: int,
    ground_px: int,
    ppm: float,
    sign_text: str,
) -> None:
    """A shop: sign band with the name, glass front with displays, a door."""
    top = h_px - ground_px
    band_h = max(4, int(0.6 * ppm))
    sign_colour = random_colour(rng, SHOP_PALETTE)
    text_colour = (255.0, 255.0, 255.0) if sum(sign_colour) < 400 else (20.0, 20.0, 20.0)
    by0 = top + int(0.25 * ppm)
    cv2.rectangle(img, (x0, by0), (x1, by0 + band_h), sign_colour, -1)
    font = int(
        rng.choice(
            [
                cv2.FONT_HERSHEY_DUPLEX,
                cv2.FONT_HERSHEY_SIMPLEX,
                cv2.FONT_HERSHEY_TRIPLEX,
                cv2.FONT_HERSHEY_COMPLEX,
            ]
        )
    )
    fit_text(img, sign_text, (x0 + 4, by0, x1 - 4, by0 + band_h), text_colour, font)
    gy0 = by0 + band_h + int(0.2 * ppm)
    gy1 = h_px - int(0.35 * ppm)
    if gy1 - gy0 < 6:
        return
    frame_colour = random_colour(rng, ((30, 30, 30), (60, 60, 60), (40, 40, 90), (200, 200, 200)))
    cv2.rectangle(img, (x0, gy0), (x1, gy1), frame_colour, -1)
    inset = max(1, int(0.06 * ppm))
    glass = img[gy0 + inset : gy1 - inset, x0 + inset : x1 - inset]
    if glass.size == 0:
        return
    gh, gw = glass.shape[:2]
    glass[:] = np.array([70, 60, 50], np.float32) + rng.uniform(-15, 15, 3)
    # Displays: shelves of coloured products (blob textures that SIFT/MSER latch onto).
    for _ in range(int(rng.integers(4, 14))):
        pw = int(rng.uniform(0.1, 0.5) * ppm)
        ph = int(rng.uniform(0.1, 0.6) * ppm)
        px = int(rng.integers(0, max(1, gw - pw)))
        py = int(rng.integers(gh // 3, max(gh // 3 + 1, gh - ph)))
        cv2.rectangle(
            glass, (px, py), (px + pw, py + ph), random_colour(rng, SHOP_PALETTE + WALL_PALETTE), -1
        )
    door_w = int(1.0 * ppm)
    dx = int(rng.uniform(0.1, 0.7) * max(1, gw - door_w))
    cv2.rectangle(glass, (dx, 0), (dx + door_w, gh), frame_colour, max(1, inset))
    cv2.line(
        glass,
        (dx + door_w - inset * 3, gh // 2),
        (dx + door_w - inset * 3, gh // 2 + int(0.3 * ppm)),
        (200, 200, 200),
        max(1, inset),
    )


def facade_texture(
    rng: np.random.Generator,
    style: FacadeStyle,
    width_m: float,
    height_m: float,
    px_per_m: float,
    front: bool,
    shop_names: tuple[str, ...] = (),
    house_number: int | None = None,
) -> np.ndarray:
    """A building wall: weathered material, floors of windows, shops or a door on the ground floor."""
    w, h = canvas_size(width_m, height_m, px_per_m)
    ppm_x, ppm_y = w / width_m, h / height_m
    ppm = 0.5 * (ppm_x + ppm_y)
    img = to_u8(_wall_base(rng, style, h, w, ppm))
    ground_px = int(style.ground_floor_m * ppm_y)
    floor_px = max(4, int(style.floor_m * ppm_y))
    win_w, win_h = int(style.window_w_m * ppm_x), int(style.window_h_m * ppm_y)
    spacing = style.window_spacing_m * ppm_x
    # Side/back walls get fewer windows, sometimes none (blind gable walls).
    window_prob = 0.93 if front else float(rng.choice([0.0, 0.0, 0.5, 0.8]))
    n_cols = max(1, int((w - 0.8 * ppm_x) // spacing))
    margin = (w - (n_cols - 1) * spacing) / 2.0
    y_floor_top = h - ground_px
    floor_index = 0
    while y_floor_top - floor_px >= int(0.3 * ppm_y):
        fy0 = y_floor_top - floor_px
        if style.cornices and front:
            cv2.rectangle(
                img,
                (0, y_floor_top - int(0.12 * ppm_y)),
                (w, y_floor_top),
                tuple(min(255.0, c * 1.12) for c in style.wall_bgr),
                -1,
            )
        for col in range(n_cols):
            if rng.random() > window_prob:
                continue
            cx = margin + col * spacing
            x0, x1 = int(cx - win_w / 2), int(cx + win_w / 2)
            y0 = fy0 + int((floor_px - win_h) * 0.55)
            _window(rng, img, x0, y0, x1, y0 + win_h, style, ppm)
            if style.balconies and front and floor_index % 2 == 0:
                rail_y = y0 + win_h
                cv2.rectangle(
                    img,
                    (x0 - int(0.2 * ppm_x), rail_y - int(0.9 * ppm_y)),
                    (x1 + int(0.2 * ppm_x), rail_y),
                    (40, 40, 40),
                    max(1, int(0.04 * ppm)),
                )
                for x in range(x0 - int(0.2 * ppm_x), x1 + int(0.2 * ppm_x), max(2, int(0.12 * ppm_x))):
                    cv2.line(img, (x, rail_y - int(0.9 * ppm_y)), (x, rail_y), (40, 40, 40), 1)
        y_floor_top = fy0
        floor_index += 1
    # Ground floor.
    if front and shop_names:
        bounds = np.linspace(0, w, len(shop_names) + 1).astype(int)
        for name, x0, x1 in zip(shop_names, bounds[:-1], bounds[1:], strict=True):
            pad = int(0.3 * ppm_x)
            _shop_front(rng, img, int(x0) + pad, int(x1) - pad, h, ground_px, ppm, name)
    elif front:
        door_w, door_h = int(1.3 * ppm_x), int(2.5 * ppm_y)
        dx = int(rng.uniform(0.15, 0.85) * (w - door_w))
        door_colour = random_colour(
            rng, ((30, 50, 90), (40, 40, 40), (60, 90, 30), (90, 40, 30), (20, 60, 120))
        )
        cv2.rectangle(img, (dx, h - door_h), (dx + door_w, h), door_colour, -1)
        for k in range(2):
            px0 = dx + int(0.15 * ppm_x) + k * door_w // 2
            cv2.rectangle(
                img,
                (px0, h - door_h + int(0.2 * ppm_y)),
                (px0 + door_w // 2 - int(0.3 * ppm_x), h - int(1.4 * ppm_y)),
                tuple(0.7 * c for c in door_colour),
                max(1, int(0.03 * ppm)),
            )
        if house_number is not None:
            plate = (
                dx + door_w + int(0.2 * ppm_x),
                h - door_h,
                dx + door_w + int(0.6 * ppm_x),
                h - door_h + int(0.3 * ppm_y),
            )
            cv2.rectangle(img, plate[:2], plate[2:], (140, 60, 20), -1)
            fit_text(img, str(house_number), plate, (255, 255, 255), cv2.FONT_HERSHEY_SIMPLEX)
        for col in range(n_cols):
            cx = margin + col * spacing
            if abs(cx - (dx + door_w / 2)) < spacing * 0.7 or rng.random() > 0.8:
                continue
            x0, x1 = int(cx - win_w / 2), int(cx + win_w / 2)
            y0 = h - ground_px + int((ground_px - win_h) * 0.4)
            _window(rng, img, x0, y0, x1, y0 + win_h, style, ppm)
            for bx in range(x0, x1, max(2, int(0.15 * ppm_x))):  # security bars
                cv2.line(img, (bx, y0), (bx, y0 + win_h), (35, 35, 35), max(1, int(0.02 * ppm)))
    # Plinth and a drainpipe.
    cv2.rectangle(img, (0, h - int(0.4 * ppm_y)), (w, h), tuple(0.7 * c for c in style.wall_bgr), -1)
    if rng.random() < 0.7:
        px = int(rng.choice([0.03, 0.97]) * w)
        cv2.rectangle(img, (px - int(0.05 * ppm_x), 0), (px + int(0.05 * ppm_x), h), (70, 80, 85), -1)
    fine = value_noise(rng, h, w, 1.5, octaves=1)
    return to_u8(img.astype(np.float32) * (1.0 + 0.04 * fine)[..., None])


# --------------------------------------------------------------------------------- street objects
def poster_texture(rng: np.random.Generator, width_m: float, height_m: float, px_per_m: float) -> np.ndarray:
    """An advertising poster: a photo, a headline and a coloured frame."""
    w, h = canvas_size(width_m, height_m, max(px_per_m, 60.0))
    img = np.empty((h, w, 3), np.float32)
    img[:] = random_colour(rng, SHOP_PALETTE + WALL_PALETTE)
    photo = load_asset(str(rng.choice(POSTER_PHOTOS)))
    ph, pw = photo.shape[:2]
    crop_frac = rng.uniform(0.6, 1.0)
    ch, cw = int(ph * crop_frac), int(pw * crop_frac)
    oy, ox = int(rng.integers(0, ph - ch + 1)), int(rng.integers(0, pw - cw + 1))
    crop = photo[oy : oy + ch, ox : ox + cw]
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    border = max(2, w // 14)
    photo_h = int(h * rng.uniform(0.5, 0.72))
    y_photo = border if rng.random() < 0.5 else h - border - photo_h
    img[y_photo : y_photo + photo_h, border : w - border] = cv2.resize(
        crop, (w - 2 * border, photo_h), interpolation=cv2.INTER_AREA
    )
    img = to_u8(img)
    text_region = (
        (border, border, w - border, y_photo)
        if y_photo > border
        else (border, y_photo + photo_h, w - border, h - border)
    )
    words = " ".join(str(rng.choice(POSTER_WORDS)) for _ in range(int(rng.integers(1, 3))))
    x0, y0, x1, y1 = text_region
    text_colour = (255.0, 255.0, 255.0) if img[min(h - 1, y0 + 1), x0].sum() < 380 else (15.0, 15.0, 15.0)
    fit_text(img, words, (x0, y0, x1, y0 + (y1 - y0) // 2), text_colour, cv2.FONT_HERSHEY_TRIPLEX)
    fit_text(
        img,
        f"{int(rng.integers(1, 29)):02d}.{int(rng.integers(1, 13)):02d}",
        (x0, y0 + (y1 - y0) // 2, x1, y1),
        text_colour,
        cv2.FONT_HERSHEY_SIMPLEX,
    )
    return img


CAR_PALETTE = (
    (30, 30, 30),
    (235, 235, 235),
    (160, 160, 160),
    (40, 40, 150),
    (140, 60, 20),
    (40, 90, 40),
    (20, 140, 220),
    (110, 110, 110),
    (80, 30, 30),
    (200, 200, 210),
)


def vehicle_textures(
    rng: np.random.Generator, length_m: float, width_m: float, height_m: float, px_per_m: float
) -> dict[str, np.ndarray]:
    """Faces of a box vehicle: ``side``, ``front``, ``back``, ``roof`` (BGR)."""
    ppm = max(px_per_m, 30.0)
    body = np.asarray(random_colour(rng, CAR_PALETTE), np.float32)
    glass = np.array([60, 50, 40], np.float32)
    plate_text = (
        f"{chr(65 + int(rng.integers(26)))}{chr(65 + int(rng.integers(26)))}-{int(rng.integers(100, 999))}-"
        f"{chr(65 + int(rng.integers(26)))}{chr(65 + int(rng.integers(26)))}"
    )

    def panel(wm: float, hm: float) -> np.ndarray:
        w, h = canvas_size(wm, hm, ppm)
        img = np.empty((h, w, 3), np.float32)
        img[:] = body
        img *= (1.0 + 0.05 * value_noise(rng, h, w, ppm * 0.5, 2))[..., None]
        return img

    side = panel(length_m, height_m)
    h, w = side.shape[:2]
    win_top, win_bottom = int(0.08 * h), int(0.45 * h)
    cv2.rectangle(side, (int(0.18 * w), win_top), (int(0.85 * w), win_bottom), _c(glass), -1)
    cv2.line(
        side, (int(0.5 * w), win_top), (int(0.5 * w), int(0.9 * h)), _c(0.6 * body), max(1, int(0.02 * ppm))
    )
    cv2.line(
        side,
        (int(0.18 * w), win_bottom),
        (int(0.18 * w), int(0.9 * h)),
        _c(0.6 * body),
        max(1, int(0.02 * ppm)),
    )
    for wx in (0.2, 0.8):
        centre = (int(wx * w), int(0.86 * h))
        cv2.circle(side, centre, int(0.33 * ppm), (25, 25, 25), -1)
        cv2.circle(side, centre, int(0.17 * ppm), (150, 150, 150), -1)
    front = panel(width_m, height_m)
    h, w = front.shape[:2]
    cv2.rectangle(front, (int(0.1 * w), int(0.05 * h)), (int(0.9 * w), int(0.42 * h)), _c(glass), -1)
    cv2.rectangle(front, (int(0.3 * w), int(0.6 * h)), (int(0.7 * w), int(0.75 * h)), (40, 40, 40), -1)
    for lx in (0.12, 0.72):
        cv2.rectangle(
            front, (int(lx * w), int(0.5 * h)), (int((lx + 0.16) * w), int(0.6 * h)), (230, 240, 240), -1
        )
    back = panel(width_m, height_m)
    cv2.rectangle(back, (int(0.12 * w), int(0.08 * h)), (int(0.88 * w), int(0.4 * h)), _c(glass), -1)
    for lx in (0.06, 0.76):
        cv2.rectangle(
            back, (int(lx * w), int(0.5 * h)), (int((lx + 0.18) * w), int(0.62 * h)), (30, 30, 200), -1
        )
    front, back = to_u8(front), to_u8(back)
    for img in (front, back):
        plate = (int(0.32 * w), int(0.78 * h), int(0.68 * w), int(0.9 * h))
        cv2.rectangle(img, plate[:2], plate[2:], (245, 245, 245), -1)
        fit_text(img, plate_text, plate, (20, 20, 20), cv2.FONT_HERSHEY_SIMPLEX)
    roof = panel(length_m, width_m) * 0.9
    return {"side": to_u8(side), "front": front, "back": back, "roof": to_u8(roof)}


CLOTHES = (
    (30, 30, 30),
    (40, 40, 120),
    (120, 60, 20),
    (200, 200, 200),
    (40, 110, 40),
    (20, 20, 150),
    (90, 90, 90),
    (150, 120, 60),
    (60, 160, 200),
)
SKIN = ((120, 160, 210), (90, 130, 180), (60, 90, 140), (140, 180, 225))


def pedestrian_texture(
    rng: np.random.Generator, width_m: float, height_m: float, px_per_m: float
) -> np.ndarray:
    """A standing person as a BGRA cut-out (alpha 0 around the silhouette)."""
    w, h = canvas_size(width_m, height_m, max(px_per_m, 60.0))
    img = np.zeros((h, w, 4), np.uint8)
    shirt = (*random_colour(rng, CLOTHES), 255)
    trousers = (*random_colour(rng, CLOTHES), 255)
    skin = (*random_colour(rng, SKIN), 255)
    hair = (*random_colour(rng, ((20, 20, 20), (30, 60, 100), (150, 190, 220), (60, 60, 60))), 255)
    cx = w // 2
    head_r = int(0.065 * h)
    cv2.ellipse(img, (cx, head_r + 2), (int(head_r * 0.85), head_r), 0, 0, 360, skin, -1)
    cv2.ellipse(img, (cx, head_r), (int(head_r * 0.9), int(head_r * 0.7)), 0, 180, 360, hair, -1)
    torso_top, torso_bottom = int(0.15 * h), int(0.52 * h)
    shoulder = int(0.42 * w)
    hip = int(0.3 * w)
    torso = np.array(
        [
            [cx - shoulder, torso_top],
            [cx + shoulder, torso_top],
            [cx + hip, torso_bottom],
            [cx - hip, torso_bottom],
        ],
        np.int32,
    )
    cv2.fillPoly(img, [torso], shirt)
    for side in (-1, 1):
        arm = np.array(
            [
                [cx + side * shoulder, torso_top],
                [cx + side * (shoulder - int(0.12 * w)), torso_top],
                [cx + side * (hip + int(0.05 * w)), int(0.5 * h)],
                [cx + side * (hip + int(0.17 * w)), int(0.5 * h)],
            ],
            np.int32,
        )
        cv2.fillPoly(img, [arm], shirt)
        cv2.circle(img, (cx + side * (hip + int(0.11 * w)), int(0.52 * h)), max(1, int(0.05 * w)), skin, -1)
        leg = np.array(
            [
                [cx + side * 2, torso_bottom],
                [cx + side * hip, torso_bottom],
                [cx + side * int(0.22 * w), h - int(0.03 * h)],
                [cx + side * int(0.05 * w), h - int(0.03 * h)],
            ],
            np.int32,
        )
        cv2.fillPoly(img, [leg], trousers)
        cv2.rectangle(
            img,
            (cx + side * int(0.03 * w), h - int(0.035 * h)),
            (cx + side * int(0.26 * w), h - 1),
            (20, 20, 20, 255),
            -1,
        )
    if rng.random() < 0.4:  # a bag
        bx = cx + int(rng.choice([-1, 1])) * int(0.3 * w)
        cv2.rectangle(
            img,
            (bx - int(0.12 * w), int(0.4 * h)),
            (bx + int(0.12 * w), int(0.55 * h)),
            (*random_colour(rng, CLOTHES), 255),
            -1,
        )
    shade = (1.0 + 0.08 * value_noise(rng, h, w, 4.0, 1))[..., None]
    img[..., :3] = to_u8(img[..., :3].astype(np.float32) * shade)
    return img


def tree_crown_texture(
    rng: np.random.Generator, width_m: float, height_m: float, px_per_m: float
) -> np.ndarray:
    """A leafy crown as a BGRA cut-out with a ragged outline."""
    w, h = canvas_size(width_m, height_m, max(px_per_m * 0.75, 20.0))
    grass = load_asset("grass")
    leaves = tile_to(cv2.resize(grass, (max(8, w // 2), max(8, h // 2)), interpolation=cv2.INTER_AREA), h, w)
    green = np.array([rng.uniform(30, 60), rng.uniform(90, 130), rng.uniform(50, 90)], np.float32)
    colour = tint(leaves, tuple(green), 1.6)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    ellipse = ((xx - w / 2) / (w / 2)) ** 2 + ((yy - h / 2) / (h / 2)) ** 2
    ragged = value_noise(rng, h, w, max(3.0, w / 8), octaves=3)
    alpha = (ellipse + 0.35 * ragged < 0.85).astype(np.uint8) * 255
    light = 1.0 + 0.25 * value_noise(rng, h, w, max(3.0, w / 5), 2) - 0.25 * (yy / h)
    bgra = np.dstack([to_u8(colour * light[..., None]), alpha])
    return bgra


def bark_texture(rng: np.random.Generator, width_m: float, height_m: float, px_per_m: float) -> np.ndarray:
    w, h = canvas_size(width_m, height_m, max(px_per_m, 40.0))
    base = np.array([rng.uniform(40, 60), rng.uniform(60, 80), rng.uniform(80, 100)], np.float32)
    streaks = cv2.resize(value_noise(rng, max(2, h // 8), w, 2.0, 2), (w, h), interpolation=cv2.INTER_LINEAR)
    return to_u8(np.broadcast_to(base, (h, w, 3)) * (1.0 + 0.3 * streaks)[..., None])


def metal_texture(rng: np.random.Generator, width_m: float, height_m: float, px_per_m: float) -> np.ndarray:
    w, h = canvas_size(width_m, height_m, max(px_per_m, 40.0))
    base = np.asarray(random_colour(rng, ((70, 75, 80), (40, 60, 40), (110, 110, 110))), np.float32)
    return to_u8(np.broadcast_to(base, (h, w, 3)) * (1.0 + 0.06 * value_noise(rng, h, w, 3.0, 2))[..., None])


def sign_texture(
    rng: np.random.Generator, kind: str, text: str, width_m: float, height_m: float
) -> np.ndarray:
    """Traffic signs (BGRA cut-outs) and street-name plates."""
    w, h = canvas_size(width_m, height_m, 160.0)
    img = np.zeros((h, w, 4), np.uint8)
    white, red, blue = (245, 245, 245, 255), (30, 30, 200, 255), (160, 80, 20, 255)
    if kind == "street_name":
        img[:] = blue
        cv2.rectangle(img, (3, 3), (w - 4, h - 4), white, max(1, h // 16))
        fit_text(img, text, (6, 6, w - 6, h - 6), white, cv2.FONT_HERSHEY_DUPLEX)
    elif kind == "speed":
        r = min(w, h) // 2 - 1
        cv2.circle(img, (w // 2, h // 2), r, red, -1)
        cv2.circle(img, (w // 2, h // 2), int(r * 0.78), white, -1)
        fit_text(
            img,
            text,
            (w // 4, h // 4, 3 * w // 4, 3 * h // 4),
            (20, 20, 20, 255),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.15,
        )
    elif kind == "warning":
        pts = np.array([[w // 2, 2], [w - 3, h - 3], [2, h - 3]], np.int32)
        cv2.fillPoly(img, [pts], red)
        inner = ((pts - pts.mean(axis=0)) * 0.72 + pts.mean(axis=0)).astype(np.int32)
        cv2.fillPoly(img, [inner], white)
        cv2.putText(
            img,
            "!",
            (w // 2 - w // 12, int(h * 0.82)),
            cv2.FONT_HERSHEY_DUPLEX,
            h / 60,
            (20, 20, 20, 255),
            max(1, h // 20),
        )
    else:  # mandatory direction: blue disc with an arrow
        r = min(w, h) // 2 - 1
        cv2.circle(img, (w // 2, h // 2), r, blue, -1)
        angle = float(rng.choice([0.0, 90.0, 180.0]))
        tip = (
            int(w / 2 + 0.6 * r * math.cos(math.radians(angle))),
            int(h / 2 - 0.6 * r * math.sin(math.radians(angle))),
        )
        tail = (w - tip[0], h - tip[1])
        cv2.arrowedLine(img, tail, tip, white, max(2, r // 5), tipLength=0.45)
    return img
