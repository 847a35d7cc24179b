"""Draw the link-preview pictures (Open Graph): _static/ftsite-card.<lang>.png, 1200 × 630.

Run once after changing the site's title or tagline:  .venv/bin/python tools/make_cards.py
The pictures are committed; the build only links to them (see _ext/ftsite_meta.py).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib
from PIL import Image, ImageDraw, ImageFont

ROOT = Path(__file__).resolve().parent.parent
FONTS = Path(matplotlib.get_data_path()) / "fonts" / "ttf"  # DejaVu, shipped with matplotlib
CARDS = {
    "en": ("Fine-Tuning by Doing", "Fine-tune language models on your own computer:",
           "every chapter comes with a notebook that runs on a CPU."),
    "fr": ("L’affinage par la pratique", "Affinez des modèles de langage sur votre ordinateur\u00a0:",
           "chaque chapitre a son notebook, qui s’exécute sur un CPU."),
}


def draw(title: str, line1: str, line2: str) -> Image.Image:
    image = Image.new("RGB", (1200, 630), "#2980b9")
    pen = ImageDraw.Draw(image)
    pen.rectangle([0, 560, 1200, 630], fill="#343131")
    bold = ImageFont.truetype(str(FONTS / "DejaVuSans-Bold.ttf"), 76)
    text = ImageFont.truetype(str(FONTS / "DejaVuSans.ttf"), 36)
    pen.text((80, 170), title, font=bold, fill="white")
    pen.text((80, 320), line1, font=text, fill="white")
    pen.text((80, 372), line2, font=text, fill="white")
    pen.text((80, 578), "English · Français", font=text, fill="#cccccc")
    return image


if __name__ == "__main__":
    for lang, lines in CARDS.items():
        path = ROOT / "_static" / f"ftsite-card.{lang}.png"
        draw(*lines).save(path, optimize=True)
        print(path.relative_to(ROOT), path.stat().st_size, "bytes")
