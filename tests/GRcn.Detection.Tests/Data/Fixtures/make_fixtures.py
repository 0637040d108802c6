#!/usr/bin/python3
"""Generate the image fixtures of GRcn.Detection.Tests/Data (run from anywhere)::

    /usr/bin/python3 tests/GRcn.Detection.Tests/Data/Fixtures/make_fixtures.py

Needs Debian's python3-pil, python3-numpy, python3-torch and python3-torchvision.

* ``png/<case>.png`` + ``png/<case>.ppm``: PNGs written by the small writer below with every
  colour type and bit depth, each scanline using filter ``row % 5`` (all five filters in
  every image), plain and Adam7-interlaced; the .ppm is the expected 8-bit RGB under the
  decoder's documented rules (16-bit → high byte, low-depth grey scaled by 255/(2^d − 1),
  palette looked up, alpha dropped). PIL decodes every PNG and must agree before it is kept.
* ``png/pil_*.png`` + .ppm: PNGs written by PIL's own encoder.
* ``jpeg/*.jpg`` + .ppm: small JPEGs written by PIL (libjpeg-turbo) and PIL's decode of them.
* ``formats/*`` + .ppm: BMP (24-bit and 8-bit palette), a two-frame GIF (the .ppm is its first
  frame), lossless WebP and a CMYK JPEG (Adobe, inverted), each written by PIL, with PIL's
  decode to RGB. ``make_fixtures.py formats`` writes only these.
* ``resize/<case>.png`` + .json + .f32: torchvision's GeneralizedRCNNTransform (eval mode,
  ImageNet mean/std) on the PNG: resized size, boxes and the normalised CHW image as
  little-endian float32.
* ``golden/<case>.png|.jpg`` + ``golden/<case>.safetensors``: the end-to-end golden check of
  decoding and input preparation. Each file (RGB, grey and RGBA PNG; baseline 4:2:0, progressive
  4:4:4 and grey JPEG; landscape, portrait, square and wide, up- and downscaled, some capped by
  the longer side) is read by ``torchvision.io.read_image(path, ImageReadMode.RGB)`` (libpng;
  libjpeg-turbo), converted to 0..1 floats (``convert_image_dtype``) and passed through
  ``GeneralizedRCNNTransform(min_size, max_size, mean, std)`` in eval mode with the engine's
  default mean/std (``InputSettings``). The safetensors file (the format of
  ``tests/golden/make_golden.py``, written by the same small encoder) holds ``decoded`` (the
  uint8 (3, H, W) pixels of read_image as F32) and ``image`` (the normalised, resized
  (3, h, w) tensor cut out of the padded batch) and, in its metadata, the sizes, min/max
  size, mean and std. ``make_fixtures.py golden`` writes only these.
"""
import json
import os
import struct
import zlib

import numpy as np
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
ADAM7 = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]
CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}


def chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def pack_row(samples, depth):
    """samples: 1-D int array of one scanline's samples -> bytes."""
    if depth == 16:
        return b"".join(struct.pack(">H", int(v)) for v in samples)
    if depth == 8:
        return bytes(int(v) for v in samples)
    per = 8 // depth
    out = bytearray((len(samples) + per - 1) // per)
    for i, v in enumerate(samples):
        out[i // per] |= int(v) << (8 - depth * (i % per + 1))
    return bytes(out)


def paeth(a, b, c):
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    return a if pa <= pb and pa <= pc else (b if pb <= pc else c)


def filter_row(kind, cur, prior, bpp):
    out = bytearray(len(cur))
    for i in range(len(cur)):
        a = cur[i - bpp] if i >= bpp else 0
        b = prior[i] if prior is not None else 0
        c = prior[i - bpp] if (prior is not None and i >= bpp) else 0
        pred = [0, a, b, (a + b) >> 1, paeth(a, b, c)][kind]
        out[i] = (cur[i] - pred) & 0xFF
    return bytes(out)


def write_png(path, samples, depth, color_type, interlace, palette=None):
    """samples: (H, W, C) integer array."""
    h, w, ch = samples.shape
    bpp = max(1, ch * depth // 8)
    raw = bytearray()
    passes = ADAM7 if interlace else [(0, 0, 1, 1)]
    for (x0, y0, dx, dy) in passes:
        sub = samples[y0::dy, x0::dx]
        if sub.shape[0] == 0 or sub.shape[1] == 0:
            continue
        prior = None
        for r in range(sub.shape[0]):
            row = pack_row(sub[r].reshape(-1), depth)
            kind = r % 5
            raw += bytes([kind]) + filter_row(kind, row, prior, bpp)
            prior = row
    png = b"\x89PNG\r\n\x1a\n"
    png += chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, depth, color_type, 0, 0, 1 if interlace else 0))
    if palette is not None:
        png += chunk(b"PLTE", bytes(palette.reshape(-1).astype(np.uint8)))
    png += chunk(b"tEXt", b"Comment\x00ancillary chunk to skip")
    comp = zlib.compress(bytes(raw), 9)
    # Two IDAT chunks: the decoder must concatenate them.
    half = len(comp) // 2
    png += chunk(b"IDAT", comp[:half]) + chunk(b"IDAT", comp[half:]) + chunk(b"IEND", b"")
    with open(path, "wb") as f:
        f.write(png)


def write_ppm(path, rgb):
    h, w, _ = rgb.shape
    with open(path, "wb") as f:
        f.write(b"P6\n%d %d\n255\n" % (w, h) + rgb.astype(np.uint8).tobytes())


def expected_rgb(samples, depth, color_type, palette):
    s = samples.astype(np.int64)
    if color_type == 3:
        return palette[s[..., 0]]
    if depth == 16:
        s = s >> 8
    elif depth < 8:
        s = s * (255 // ((1 << depth) - 1))
    if color_type in (0, 4):
        return np.repeat(s[..., :1], 3, axis=2)
    return s[..., :3]


def png_suite():
    out = os.path.join(HERE, "png")
    os.makedirs(out, exist_ok=True)
    rng = np.random.default_rng(1234)
    combos = [(0, d) for d in (1, 2, 4, 8, 16)] + [(2, 8), (2, 16)] + [(3, d) for d in (1, 2, 4, 8)] + \
             [(4, 8), (4, 16), (6, 8), (6, 16)]
    names = {0: "grey", 2: "rgb", 3: "palette", 4: "greyalpha", 6: "rgba"}
    for (ct, depth) in combos:
        for (w, h) in [(13, 11), (3, 2)]:
            ch = CHANNELS[ct]
            palette = None
            if ct == 3:
                entries = (1 << depth) if depth < 8 else 200
                palette = rng.integers(0, 256, size=(entries, 3))
                samples = rng.integers(0, entries, size=(h, w, 1))
            else:
                samples = rng.integers(0, 1 << depth, size=(h, w, ch))
            exp = expected_rgb(samples, depth, ct, palette)
            for interlace in (0, 1):
                name = f"{names[ct]}{depth}_{w}x{h}_{'adam7' if interlace else 'plain'}"
                path = os.path.join(out, name + ".png")
                write_png(path, samples, depth, ct, interlace, palette)
                im = Image.open(path)
                im.load()
                if im.mode.startswith("I"):
                    assert (np.array(im).astype(np.int64) == samples[..., 0]).all(), name
                else:
                    assert (np.array(im.convert("RGB")).astype(np.int64) == exp).all(), name
                write_ppm(os.path.join(out, name + ".ppm"), exp)
    # PIL's own encoder.
    img = np.zeros((30, 40, 3), np.uint8)
    yy, xx = np.mgrid[0:30, 0:40]
    img[..., 0] = xx * 6
    img[..., 1] = yy * 8
    img[..., 2] = rng.integers(0, 256, size=(30, 40))
    Image.fromarray(img).save(os.path.join(out, "pil_rgb.png"))
    write_ppm(os.path.join(out, "pil_rgb.ppm"), img)
    pal = Image.fromarray(img).quantize(16)
    pal.save(os.path.join(out, "pil_palette.png"))
    write_ppm(os.path.join(out, "pil_palette.ppm"), np.array(pal.convert("RGB")))
    rgba = np.concatenate([img, rng.integers(0, 256, size=(30, 40, 1), dtype=np.uint8)], axis=2)
    Image.fromarray(rgba, "RGBA").save(os.path.join(out, "pil_rgba.png"))
    write_ppm(os.path.join(out, "pil_rgba.ppm"), img)


def jpeg_suite():
    out = os.path.join(HERE, "jpeg")
    os.makedirs(out, exist_ok=True)
    yy, xx = np.mgrid[0:29, 0:37]
    img = np.stack([xx * 7, yy * 8, (xx + yy) * 4 % 256], axis=2).astype(np.uint8)
    img[10:18, 12:25] = [250, 30, 40]
    cases = {
        "rgb420": lambda p: Image.fromarray(img).save(p, quality=85, subsampling=2),
        "rgb444_progressive": lambda p: Image.fromarray(img).save(p, quality=92, subsampling=0, progressive=True),
        "grey": lambda p: Image.fromarray(img[..., 1]).save(p, quality=90),
    }
    for name, save in cases.items():
        path = os.path.join(out, name + ".jpg")
        save(path)
        write_ppm(os.path.join(out, name + ".ppm"), np.array(Image.open(path).convert("RGB")))


def formats_suite():
    out = os.path.join(HERE, "formats")
    os.makedirs(out, exist_ok=True)
    yy, xx = np.mgrid[0:21, 0:30]
    img = np.stack([xx * 8, yy * 12, (xx * yy) % 256], axis=2).astype(np.uint8)
    img[5:12, 8:20] = [20, 200, 90]
    second = 255 - img
    cases = {
        "rgb24.bmp": lambda p: Image.fromarray(img).save(p),
        "palette8.bmp": lambda p: Image.fromarray(img).quantize(16).save(p),
        "two_frames.gif": lambda p: Image.fromarray(img).quantize(64).save(
            p, save_all=True, append_images=[Image.fromarray(second).quantize(64)], duration=100, loop=0),
        "lossless.webp": lambda p: Image.fromarray(img).save(p, lossless=True),
        "cmyk.jpg": lambda p: Image.fromarray(img).convert("CMYK").save(p, quality=95),
    }
    for name, save in cases.items():
        path = os.path.join(out, name)
        save(path)
        write_ppm(os.path.join(out, os.path.splitext(name)[0] + ".ppm"), np.array(Image.open(path).convert("RGB")))


def resize_suite():
    import torch
    from torchvision.models.detection.transform import GeneralizedRCNNTransform
    torch.set_num_threads(1)
    out = os.path.join(HERE, "resize")
    os.makedirs(out, exist_ok=True)
    rng = np.random.default_rng(99)
    img = rng.integers(0, 256, size=(17, 23, 3), dtype=np.uint8)
    img[4:9, 5:15] = [255, 255, 255]
    Image.fromarray(img).save(os.path.join(out, "input.png"))
    boxes = [[1.5, 2.0, 10.0, 12.0], [0.0, 0.0, 23.0, 17.0]]
    for name, (smin, smax) in {"up": (30, 50), "capped": (30, 35), "down": (11, 16)}.items():
        t = GeneralizedRCNNTransform(smin, smax, [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]).eval()
        x = torch.from_numpy(img).permute(2, 0, 1).float().div(255)
        images, targets = t([x], [{"boxes": torch.tensor(boxes), "labels": torch.tensor([1, 2])}])
        h, w = images.image_sizes[0]
        y = images.tensors[0, :, :h, :w].contiguous().numpy().astype("<f4")
        y.tofile(os.path.join(out, name + ".f32"))
        with open(os.path.join(out, name + ".json"), "w") as f:
            json.dump({"min_size": smin, "max_size": smax, "width": w, "height": h,
                       "boxes": targets[0]["boxes"].tolist()}, f, indent=1)


# The engine's defaults (InputSettings.Mean / Std).
ENGINE_MEAN = [0.485, 0.456, 0.406]
ENGINE_STD = [0.229, 0.224, 0.225]


def encode_safetensors(tensors, metadata):
    """tensors: list of (name, float32 array); the format of tests/golden/make_golden.py."""
    from collections import OrderedDict
    header = OrderedDict()
    header["__metadata__"] = OrderedDict((k, str(v)) for k, v in metadata.items())
    chunks, offset = [], 0
    for name, arr in tensors:
        raw = np.ascontiguousarray(np.asarray(arr, dtype="<f4")).tobytes(order="C")
        header[name] = OrderedDict([("dtype", "F32"), ("shape", [int(d) for d in arr.shape]),
                                    ("data_offsets", [offset, offset + len(raw)])])
        chunks.append(raw)
        offset += len(raw)
    hjson = json.dumps(header, separators=(",", ":")).encode("utf-8")
    hjson += b" " * ((8 - len(hjson) % 8) % 8)
    return struct.pack("<Q", len(hjson)) + hjson + b"".join(chunks)


def scene(w, h, seed):
    """A photo-like RGB picture: smooth gradients, waves, noise and two sharp-edged shapes."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    r = 128 + 100 * np.sin(xx / w * 5.0 + seed) * np.cos(yy / h * 3.0)
    g = 40 + 180 * yy / max(1, h - 1)
    b = 128 + 90 * np.cos((xx + 2 * yy) / 6.0)
    img = np.stack([r, g, b], axis=2) + rng.normal(0, 12, size=(h, w, 3))
    img[h // 5:h // 2, w // 4:w // 2] = [250, 245, 20]
    cy, cx, rad = 2 * h // 3, 2 * w // 3, min(w, h) // 5
    img[(yy - cy) ** 2 + (xx - cx) ** 2 <= rad * rad] = [20, 30, 200]
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def golden_suite():
    import torch
    from torchvision.io import ImageReadMode, read_image
    from torchvision.models.detection.transform import GeneralizedRCNNTransform
    from torchvision.transforms.functional import convert_image_dtype
    torch.set_num_threads(1)
    out = os.path.join(HERE, "golden")
    os.makedirs(out, exist_ok=True)
    # name: (width, height, save, min_size, max_size)
    cases = {
        "png_rgb_45x31_up": (45, 31, lambda a, p: Image.fromarray(a).save(p), 40, 70),
        "png_grey_27x52_capped_down": (27, 52, lambda a, p: Image.fromarray(a[..., 1]).save(p), 20, 32),
        "png_rgba_33x33_up": (33, 33, lambda a, p: Image.fromarray(
            np.concatenate([a, (a[..., :1] // 2 + 60)], axis=2), "RGBA").save(p), 50, 80),
        "jpg_rgb420_64x41_down": (64, 41, lambda a, p: Image.fromarray(a).save(p, quality=88, subsampling=2), 30, 50),
        "jpg_progressive444_38x57_capped": (38, 57, lambda a, p: Image.fromarray(a).save(
            p, quality=93, subsampling=0, progressive=True), 45, 60),
        "jpg_grey_50x23_up": (50, 23, lambda a, p: Image.fromarray(a[..., 0]).save(p, quality=85), 30, 90),
    }
    for seed, (name, (w, h, save, smin, smax)) in enumerate(cases.items()):
        path = os.path.join(out, name + ("." + name[:3] if not name.startswith("jpg") else ".jpg"))
        save(scene(w, h, seed + 1), path)
        decoded = read_image(path, ImageReadMode.RGB)
        assert tuple(decoded.shape) == (3, h, w), (name, decoded.shape)
        # libpng / libjpeg-turbo in torchvision agree with PIL's convert("RGB") on these files.
        assert (decoded.permute(1, 2, 0).numpy() == np.array(Image.open(path).convert("RGB"))).all(), name
        t = GeneralizedRCNNTransform(smin, smax, ENGINE_MEAN, ENGINE_STD).eval()
        images, _ = t([convert_image_dtype(decoded, torch.float32)])
        oh, ow = images.image_sizes[0]
        y = images.tensors[0, :, :oh, :ow].contiguous().numpy()
        meta = {"format": "grcn-image-golden/1", "source": os.path.basename(path), "width": w, "height": h,
                "min_size": smin, "max_size": smax, "out_width": ow, "out_height": oh,
                "mean": json.dumps(ENGINE_MEAN), "std": json.dumps(ENGINE_STD),
                "reference": "torchvision %s read_image(RGB) + GeneralizedRCNNTransform (eval), torch %s"
                             % (torchvision_version(), torch.__version__)}
        with open(os.path.join(out, name + ".safetensors"), "wb") as f:
            f.write(encode_safetensors([("decoded", decoded.numpy().astype(np.float32)), ("image", y)], meta))


def torchvision_version():
    import torchvision
    return torchvision.__version__


if __name__ == "__main__":
    import sys
    if sys.argv[1:] == ["formats"]:
        formats_suite()
        sys.exit(0)
    if sys.argv[1:] == ["golden"]:
        golden_suite()
        sys.exit(0)
    png_suite()
    jpeg_suite()
    formats_suite()
    resize_suite()
    golden_suite()
