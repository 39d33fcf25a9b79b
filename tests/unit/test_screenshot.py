"""``make screenshot`` draws a pyte screen cell by cell: the characters where pyte has them,
in pyte's colours, cropped to the rows in use (labkit.screenshot.render)."""

from __future__ import annotations

from pathlib import Path

from labkit import screenshot
from labkit.util import import_or_unavailable

pyte = import_or_unavailable("pyte", "the screenshot test (the dev extra)")
Image = import_or_unavailable("PIL.Image", "the screenshot test (matplotlib's Pillow)")


def test_a_screen_is_drawn_with_its_colours_and_cropped(tmp_path: Path) -> None:
    screen = pyte.Screen(40, 24)
    pyte.ByteStream(screen).feed(
        "12:04 you → bob: hi \x1b[32m✓\x1b[39m\r\n"
        "12:04 you → zed: hi \x1b[31m✗\x1b[39m no\r\n+> ".encode()
    )
    out = tmp_path / "t.png"
    screenshot.render(screen, out)
    image = Image.open(out).convert("RGB")
    width, height = image.size
    assert width > 40 * 5 and height < 24 * 10  # 3 rows of 24, not the whole screen
    pixels = [image.getpixel((x, y)) for y in range(height) for x in range(width)]
    assert screenshot.BACKGROUND in pixels

    def near(colour: tuple[int, int, int]) -> int:
        return sum(all(abs(p[i] - colour[i]) < 40 for i in range(3)) for p in pixels)

    assert near(screenshot.COLOURS["green"]) > 5  # the tick
    assert near(screenshot.COLOURS["red"]) > 5  # the cross
    # The tick sits in the first row, right of the text; nothing green below that row.
    green = [
        (i % width, i // width)
        for i, p in enumerate(pixels)
        if all(abs(p[c] - screenshot.COLOURS["green"][c]) < 40 for c in range(3))
    ]
    row_h = round(screenshot.FONT_PX * 1.35)
    assert max(y for _, y in green) < screenshot.PAD_PX + row_h
    assert min(x for x, _ in green) > width // 2
