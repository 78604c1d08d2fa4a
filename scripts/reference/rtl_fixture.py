"""Writes indexer/tests/data/rtl.pdf: a one-page PDF of right-to-left text for the layout tests.

The page has an English line, a Hebrew line, a Hebrew line with an English word inside, and an
Arabic line, each set in DejaVu Sans (embedded as a subset with a ToUnicode map by reportlab).
Like most producers, it draws each line's glyphs left to right in visual order: the Unicode
bidi algorithm has been applied before drawing (here by hand: Hebrew needs no shaping, and the
Arabic is drawn in isolated forms, which is enough for text extraction). The right-to-left
lines are right-aligned, as an RTL paragraph is. Deterministic (fixed dates and ids).

    scripts/reference/setup-pdf-venv.sh
    scripts/reference/.venv-pdf/bin/python scripts/reference/rtl_fixture.py
"""

from pathlib import Path

from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont
from reportlab.pdfgen import canvas

FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"
OUT = Path(__file__).resolve().parents[2] / "indexer/tests/data/rtl.pdf"

# (logical text, visual text as drawn, right-aligned)
LINES = [
    ("Folio reads right-to-left text.", "Folio reads right-to-left text.", False),
    ("שלום עולם ומסמכים", "םיכמסמו םלוע םולש", True),
    ("גרסה Folio חדשה", "השדח Folio הסרג", True),
    ("مرحبا بالعالم", "ملاعلاب ابحرم", True),
]


def main() -> None:
    pdfmetrics.registerFont(TTFont("DejaVuSans", FONT))
    OUT.parent.mkdir(parents=True, exist_ok=True)
    c = canvas.Canvas(str(OUT), pagesize=(595, 842), invariant=1)
    c.setTitle("Folio RTL fixture")
    c.setFont("DejaVuSans", 18)
    y = 760
    for logical, visual, rtl in LINES:
        assert sorted(logical.replace(" ", "")) == sorted(visual.replace(" ", "")), logical
        if rtl:
            c.drawRightString(523, y, visual)
        else:
            c.drawString(72, y, visual)
        y -= 40
    c.showPage()
    c.save()
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
