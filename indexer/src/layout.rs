//! Where a page's text sits on the page: lines and blocks with boxes, in reading order.
//!
//! The page text stays pdf_oxide's `extract_text` (its reading order handles columns, tables
//! and de-hyphenation, and it is what the routes have always indexed). The layout is laid
//! over that text afterwards: the page's positioned spans (which pdf_oxide caches, so they
//! cost a clone) are cut into glyphs, the glyphs are aligned with the text's characters, and
//! runs of aligned characters whose glyphs sit side by side on one baseline become lines.
//! Lines that follow each other down one column at a steady pitch, in one font size, form a
//! block. Text the alignment cannot place (annotation text, words whose glyphs map to other
//! words) gets no line.
//!
//! Right-to-left runs (Hebrew, Arabic) are laid out from their right end, and their lines
//! read on leftwards and are marked [`TextLine::rtl`], so that a passage's box is cut from
//! the right end of such a line. The text itself is never changed but for one repair:
//! pdf_oxide reverses a whole run into reading order, Latin words and numbers inside it
//! too, and those are turned back.
//!
//! Geometry is worked in points in the displayed page frame (page `/Rotate` applied, y
//! downwards), and boxes come out as fractions of the visible page (the CropBox within the
//! MediaBox, as the renderer draws it), origin top-left.

use std::collections::HashMap;

use folio_core::BBox;
use pdf_oxide::document::PdfDocument;
use pdf_oxide::layout::TextSpan;
use serde::{Deserialize, Serialize};

/// A page's text and its layout.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ExtractedPage {
    /// The page text, as the text routes index it.
    pub text: String,
    /// Its lines in reading order (the order of the text); empty when the page has no layout.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lines: Vec<TextLine>,
}

/// One line of a page: a run of the page text drawn side by side on one baseline.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TextLine {
    /// Start offset in the page text, in chars.
    pub start: u32,
    /// End offset (exclusive), in chars.
    pub end: u32,
    /// The block the line belongs to: blocks are numbered from 0 in reading order, and the
    /// lines of one block are consecutive.
    pub block: u32,
    /// Where the line is, in fractions of the visible page (origin top-left).
    pub bbox: BBox,
    /// Whether the line reads right to left (most of its letters are Hebrew, Arabic or
    /// another right-to-left script): its text starts at the right end of its box.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub rtl: bool,
}

/// A block of lines: a paragraph-like run of one column.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TextBlock {
    /// Start offset of its first line in the page text, in chars.
    pub start: u32,
    /// End offset (exclusive) of its last line, in chars.
    pub end: u32,
    /// The union of its line boxes.
    pub bbox: BBox,
}

impl ExtractedPage {
    /// A page without layout (text documents, pages whose layout is unknown).
    pub fn text_only(text: String) -> Self {
        ExtractedPage {
            text,
            lines: Vec::new(),
        }
    }

    /// The page's blocks, in reading order.
    pub fn blocks(&self) -> Vec<TextBlock> {
        let mut out: Vec<(u32, TextBlock)> = Vec::new();
        for l in &self.lines {
            match out.last_mut() {
                Some((id, b)) if *id == l.block => {
                    b.end = l.end;
                    b.bbox = union(b.bbox, l.bbox);
                }
                _ => out.push((
                    l.block,
                    TextBlock {
                        start: l.start,
                        end: l.end,
                        bbox: l.bbox,
                    },
                )),
            }
        }
        out.into_iter().map(|(_, b)| b).collect()
    }
}

/// The smallest box holding both.
fn union(a: BBox, b: BBox) -> BBox {
    BBox {
        x0: a.x0.min(b.x0),
        y0: a.y0.min(b.y0),
        x1: a.x1.max(b.x1),
        y1: a.y1.max(b.y1),
    }
}

/// The boxes that cover chars `start..end` of a page: per run of consecutive lines of one
/// block, a line only partly covered gets its own box (cut in proportion to the chars
/// covered), and the wholly covered lines between are merged into one.
pub fn boxes_for(lines: &[TextLine], start: u32, end: u32) -> Vec<BBox> {
    let mut out: Vec<BBox> = Vec::new();
    // Whether the last box pushed holds whole lines only, of this block, up to this line.
    let mut open: Option<(u32, usize)> = None;
    let first = lines.partition_point(|l| l.end <= start);
    for (i, l) in lines.iter().enumerate().skip(first) {
        if l.start >= end {
            break;
        }
        let (a, b) = (start.max(l.start), end.min(l.end));
        if a >= b {
            continue;
        }
        if a > l.start || b < l.end {
            out.push(cut(l, a, b));
            open = None;
            continue;
        }
        match (open, out.last_mut()) {
            (Some((block, last)), Some(prev)) if block == l.block && last + 1 == i => {
                *prev = union(*prev, l.bbox);
            }
            _ => out.push(l.bbox),
        }
        open = Some((l.block, i));
    }
    out
}

/// The part of line `l` that holds chars `a..b`, in proportion to the chars, from the right
/// end of a right-to-left line (lines that run down the page, taller than wide, are not cut).
fn cut(l: &TextLine, a: u32, b: u32) -> BBox {
    let n = (l.end - l.start) as f32;
    let (w, h) = (l.bbox.x1 - l.bbox.x0, l.bbox.y1 - l.bbox.y0);
    if n <= 0.0 || h > w {
        return l.bbox;
    }
    let (mut f0, mut f1) = ((a - l.start) as f32 / n, (b - l.start) as f32 / n);
    if l.rtl {
        (f0, f1) = (1.0 - f1, 1.0 - f0);
    }
    BBox {
        x0: l.bbox.x0 + w * f0,
        x1: l.bbox.x0 + w * f1,
        ..l.bbox
    }
}

/// A rectangle in points, y downwards.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Rect {
    pub x0: f32,
    pub y0: f32,
    pub x1: f32,
    pub y1: f32,
}

impl Rect {
    fn height(&self) -> f32 {
        self.y1 - self.y0
    }

    fn union(&self, o: &Rect) -> Rect {
        Rect {
            x0: self.x0.min(o.x0),
            y0: self.y0.min(o.y0),
            x1: self.x1.max(o.x1),
            y1: self.y1.max(o.y1),
        }
    }

    fn v_overlap(&self, o: &Rect) -> f32 {
        self.y1.min(o.y1) - self.y0.max(o.y0)
    }

    fn h_overlap(&self, o: &Rect) -> f32 {
        self.x1.min(o.x1) - self.x0.max(o.x0)
    }
}

/// One drawn character: what it is, where, and which span drew it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Glyph {
    pub c: char,
    pub rect: Rect,
    pub span: u32,
    /// Laid out right to left from a span whose text pdf_oxide turned from drawing order
    /// into reading order (see [`glyphs`]).
    pub flipped: bool,
}

/// Maps user-space geometry to the displayed page and to fractions of its visible part.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Frame {
    /// MediaBox origin and size.
    llx: f32,
    lly: f32,
    w: f32,
    h: f32,
    /// Clockwise page rotation: 0, 90, 180 or 270.
    rot: i32,
    /// The visible part of the displayed page, in displayed points (y down).
    visible: Rect,
}

impl Frame {
    /// A frame from the MediaBox and visible box `(llx, lly, urx, ury)` and the page
    /// rotation; `None` when the page has no area.
    pub fn new(
        media: (f32, f32, f32, f32),
        visible: (f32, f32, f32, f32),
        rot: i32,
    ) -> Option<Self> {
        let (w, h) = (media.2 - media.0, media.3 - media.1);
        if !(w.is_finite() && h.is_finite() && w > 0.0 && h > 0.0) {
            return None;
        }
        let mut frame = Frame {
            llx: media.0,
            lly: media.1,
            w,
            h,
            rot: rot.rem_euclid(360),
            visible: Rect {
                x0: 0.0,
                y0: 0.0,
                x1: 0.0,
                y1: 0.0,
            },
        };
        let v = frame.user_rect(
            visible.0,
            visible.1,
            visible.2 - visible.0,
            visible.3 - visible.1,
        );
        if !(v.x1 - v.x0 > 0.0 && v.y1 - v.y0 > 0.0) {
            return None;
        }
        frame.visible = v;
        Some(frame)
    }

    /// Height of the displayed page.
    fn displayed_height(&self) -> f32 {
        match self.rot {
            90 | 270 => self.w,
            _ => self.h,
        }
    }

    /// A user-space rectangle (lower-left corner, width, height) in displayed points.
    pub fn user_rect(&self, x: f32, y: f32, width: f32, height: f32) -> Rect {
        let map = |px: f32, py: f32| -> (f32, f32) {
            let (rx, ry) = (px - self.llx, py - self.lly);
            match self.rot {
                90 => (ry, self.w - rx),
                180 => (self.w - rx, self.h - ry),
                270 => (self.h - ry, rx),
                _ => (rx, ry),
            }
        };
        let (ax, ay) = map(x, y);
        let (bx, by) = map(x + width, y + height);
        self.displayed_rect(ax.min(bx), ay.min(by), ax.max(bx), ay.max(by))
    }

    /// A rectangle already in the displayed frame (y up, offset by the MediaBox origin, as
    /// pdf_oxide leaves spans it has rotated) in displayed points.
    fn rotated_rect(&self, x: f32, y: f32, width: f32, height: f32) -> Rect {
        let (x0, y0) = (x - self.llx, y - self.lly);
        self.displayed_rect(x0, y0, x0 + width, y0 + height)
    }

    fn displayed_rect(&self, x0: f32, y0: f32, x1: f32, y1: f32) -> Rect {
        let top = self.displayed_height();
        Rect {
            x0,
            y0: top - y1,
            x1,
            y1: top - y0,
        }
    }

    /// The inverse of the 180° map pdf_oxide applies to spans: back to user space.
    fn unrotate_180(&self, x: f32, y: f32, width: f32, height: f32) -> (f32, f32) {
        let rx = self.w - (x - self.llx) - width;
        let ry = self.h - (y - self.lly) - height;
        (self.llx + rx, self.lly + ry)
    }

    /// `r` in fractions of the visible page, clipped to it; `None` when nothing is left.
    pub fn fractions(&self, r: &Rect) -> Option<BBox> {
        let v = &self.visible;
        let (vw, vh) = (v.x1 - v.x0, v.y1 - v.y0);
        let fx = |x: f32| ((x - v.x0) / vw).clamp(0.0, 1.0);
        let fy = |y: f32| ((y - v.y0) / vh).clamp(0.0, 1.0);
        let b = BBox {
            x0: fx(r.x0),
            y0: fy(r.y0),
            x1: fx(r.x1),
            y1: fy(r.y1),
        };
        let finite = [b.x0, b.y0, b.x1, b.y1].iter().all(|v| v.is_finite());
        (finite && b.x1 > b.x0 && b.y1 > b.y0).then_some(b)
    }
}

/// How far descenders reach below the baseline, in font sizes.
const DESCENT: f32 = 0.22;

/// The glyphs of `spans` in span order, whitespace left out. Horizontal runs are cut into
/// per-character boxes (pdf_oxide's glyph origins when it has them, else its advance widths,
/// else equal shares); rotated runs give every character the run's box.
///
/// A right-to-left run (most letters Hebrew, Arabic...) drawn left to right, as producers
/// draw after the bidi algorithm, comes from pdf_oxide with its text and advance widths
/// reversed into reading order: its characters are laid out from the right end of the run.
pub(crate) fn glyphs(spans: &[TextSpan], frame: &Frame) -> Vec<Glyph> {
    let mut out = Vec::new();
    for (si, s) in spans.iter().enumerate() {
        let span = si as u32;
        let b = s.bbox;
        if ![b.x, b.y, b.width, b.height].iter().all(|v| v.is_finite()) {
            continue;
        }
        let n = s.text.chars().count();
        let horizontal =
            s.rotation_degrees == 0.0 && matches!(s.page_rotation_applied.rem_euclid(360), 0 | 180);
        if !horizontal {
            let p = s.page_bbox();
            let rect = if s.page_rotation_applied != 0 {
                frame.rotated_rect(p.x, p.y, p.width, p.height)
            } else {
                frame.user_rect(p.x, p.y, p.width, p.height)
            };
            push_chars(&mut out, s.text.chars().map(|c| (c, rect)), span, false);
            continue;
        }
        let (x, y) = if s.page_rotation_applied.rem_euclid(360) == 180 {
            frame.unrotate_180(b.x, b.y, b.width, b.height)
        } else {
            (b.x, b.y)
        };
        let (advances, mirrored) = char_advances(s, x, n, reads_rtl(&s.text));
        // The run's box starts at the baseline and is one font size high: move it down to
        // take in descenders (and leave the room above capitals).
        let bottom = y - DESCENT * b.height;
        let chars = s
            .text
            .chars()
            .zip(advances)
            .map(|(c, (cx, cw))| (c, frame.user_rect(cx, bottom, cw, b.height)));
        push_chars(&mut out, chars, span, mirrored && !s.rtl_draw_logical);
    }
    out
}

/// Whether `c` belongs to a right-to-left script (Hebrew, Arabic, Syriac, Thaana, N'Ko,
/// Samaritan, Mandaic, and their presentation forms).
pub(crate) fn is_rtl(c: char) -> bool {
    matches!(u32::from(c),
        0x0590..=0x08FF | 0xFB1D..=0xFDFF | 0xFE70..=0xFEFF | 0x10800..=0x10FFF | 0x1E800..=0x1EFFF)
}

/// Whether most letters of `text` are right-to-left.
fn reads_rtl(text: &str) -> bool {
    let (mut rtl, mut letters) = (0usize, 0usize);
    for c in text.chars().filter(|c| c.is_alphanumeric()) {
        letters += 1;
        rtl += usize::from(is_rtl(c));
    }
    rtl * 2 > letters
}

/// Pushes the non-whitespace characters, with ligatures spelled out (extractors disagree on
/// whether `ﬁ` is one char or two).
fn push_chars(
    out: &mut Vec<Glyph>,
    chars: impl Iterator<Item = (char, Rect)>,
    span: u32,
    flipped: bool,
) {
    for (c, rect) in chars {
        if c.is_whitespace() {
            continue;
        }
        let spelled: &str = match c {
            '\u{FB00}' => "ff",
            '\u{FB01}' => "fi",
            '\u{FB02}' => "fl",
            '\u{FB03}' => "ffi",
            '\u{FB04}' => "ffl",
            '\u{FB05}' | '\u{FB06}' => "st",
            _ => {
                out.push(Glyph {
                    c,
                    rect,
                    span,
                    flipped,
                });
                continue;
            }
        };
        out.extend(spelled.chars().map(|c| Glyph {
            c,
            rect,
            span,
            flipped,
        }));
    }
}

/// `(x, width)` in user space of each of the `n` chars of a horizontal span starting at `x`,
/// and whether they were laid out from the right end (`rtl`, unless glyph origins say where
/// each char is).
fn char_advances(s: &TextSpan, x: f32, n: usize, rtl: bool) -> (Vec<(f32, f32)>, bool) {
    let right = x + s.bbox.width;
    let offsets = &s.char_x_offsets;
    let offsets_fit = offsets.len() == n
        && offsets
            .iter()
            .all(|&o| o.is_finite() && o >= s.bbox.x - 0.5 && o <= s.bbox.x + s.bbox.width + 0.5);
    // Offsets are in user space; on a page pdf_oxide turned by 180°, they are not worth
    // mapping back: advances do.
    if offsets_fit && x == s.bbox.x {
        let widths_fit = s.char_widths.len() == n;
        let max_advance = (s.font_size * 1.5).max(0.0);
        let placed = (0..n)
            .map(|i| {
                let ox = offsets[i];
                let next = offsets
                    .get(i + 1)
                    .map(|&o| o - ox)
                    .filter(|d| *d > 0.0 && *d <= max_advance);
                let w = match next {
                    Some(d) => d,
                    None if widths_fit => s.char_widths[i],
                    None => (right - ox).max(0.0),
                };
                (ox, w.max(0.0))
            })
            .collect();
        return (placed, false);
    }
    let left_to_right: Vec<(f32, f32)> =
        if s.char_widths.len() == n && s.char_widths.iter().all(|w| w.is_finite()) {
            let mut cx = x;
            s.char_widths
                .iter()
                .map(|&w| {
                    let at = cx;
                    cx += w;
                    (at, w.max(0.0))
                })
                .collect()
        } else {
            let w = if n > 0 { s.bbox.width / n as f32 } else { 0.0 };
            (0..n).map(|i| (x + w * i as f32, w)).collect()
        };
    if !rtl {
        return (left_to_right, false);
    }
    // Mirror within the run: the first char ends at its right end.
    let mirrored = left_to_right
        .into_iter()
        .map(|(at, w)| (2.0 * x + s.bbox.width - at - w, w))
        .collect();
    (mirrored, true)
}

/// Chars compared at a time when the alignment looks for its place again.
const K: usize = 5;
/// Candidates looked at per resynchronisation (bounds the work on repetitive text such as
/// dot leaders).
const MAX_CANDIDATES: usize = 64;
/// Chars skipped on either side to get over a small difference (a hyphen removed at a line
/// break, a character without a glyph).
const MAX_SKIP: usize = 3;

/// For each char of `text`, the index of the glyph that drew it, if one was found.
///
/// Both sides are read without whitespace. Matching chars are taken in step; on a mismatch,
/// a few chars are skipped on either side if that brings them back in step, else the next
/// `K` chars of the text are looked up among the glyphs (the nearest unused occurrence after
/// the current glyph, else before it), which follows the text when its reading order departs
/// from the order the spans were drawn in.
pub(crate) fn align(text: &str, glyphs: &[Glyph]) -> Vec<Option<u32>> {
    let chars: Vec<char> = text.chars().collect();
    let mut owner = vec![None; chars.len()];
    let t: Vec<(usize, char)> = chars
        .iter()
        .enumerate()
        .filter(|(_, c)| !c.is_whitespace())
        .map(|(i, &c)| (i, c))
        .collect();
    if t.is_empty() || glyphs.is_empty() {
        return owner;
    }
    let mut index: HashMap<u64, Vec<u32>> = HashMap::new();
    if glyphs.len() >= K {
        for j in 0..=glyphs.len() - K {
            index
                .entry(key(glyphs[j..j + K].iter().map(|g| g.c)))
                .or_default()
                .push(j as u32);
        }
    }
    let mut used = vec![false; glyphs.len()];
    let free_match = |used: &[bool], ti: usize, gj: usize, n: usize| -> bool {
        (0..n).all(|d| {
            matches!((t.get(ti + d), glyphs.get(gj + d)), (Some(&(_, c)), Some(g)) if g.c == c)
                && !used[gj + d]
        })
    };
    let (mut i, mut j) = (0usize, 0usize);
    while i < t.len() {
        if free_match(&used, i, j, 1) {
            owner[t[i].0] = Some(j as u32);
            used[j] = true;
            i += 1;
            j += 1;
            continue;
        }
        let need = 2.min(t.len() - i);
        if let Some(d) = (1..=MAX_SKIP).find(|&d| free_match(&used, i, j + d, need)) {
            j += d;
            continue;
        }
        if let Some(d) =
            (1..=MAX_SKIP).find(|&d| i + d + need <= t.len() && free_match(&used, i + d, j, need))
        {
            i += d;
            continue;
        }
        if i + K <= t.len()
            && let Some(cands) = index.get(&key(t[i..i + K].iter().map(|&(_, c)| c)))
        {
            let free = |&&p: &&u32| (p as usize..p as usize + K).all(|q| !used[q]);
            let split = cands.partition_point(|&p| (p as usize) < j);
            let found = cands[split..]
                .iter()
                .take(MAX_CANDIDATES)
                .find(free)
                .or_else(|| cands[..split].iter().take(MAX_CANDIDATES).find(free));
            if let Some(&p) = found {
                j = p as usize;
                continue;
            }
        }
        i += 1;
    }
    place_leftovers(&t, glyphs, &mut used, &mut owner);
    owner
}

/// Runs of unmatched chars this long or shorter are looked for once more.
const MAX_LEFTOVER: usize = 32;
/// At most this many runs are looked for (each costs a scan of the glyphs).
const MAX_LEFTOVERS: usize = 256;

/// The second pass: short runs of chars the first pass left unmatched (a page number drawn
/// before the body, too short for the `K`-char lookup) are placed on the first run of unused
/// glyphs that spells them.
fn place_leftovers(
    t: &[(usize, char)],
    glyphs: &[Glyph],
    used: &mut [bool],
    owner: &mut [Option<u32>],
) {
    let mut runs = Vec::new();
    let mut i = 0;
    while i < t.len() && runs.len() < MAX_LEFTOVERS {
        if owner[t[i].0].is_some() {
            i += 1;
            continue;
        }
        let start = i;
        while i < t.len() && owner[t[i].0].is_none() {
            i += 1;
        }
        if i - start <= MAX_LEFTOVER {
            runs.push(start..i);
        }
    }
    for run in runs {
        let n = run.len();
        if n > glyphs.len() {
            continue;
        }
        let spelled =
            |p: usize| (0..n).all(|d| !used[p + d] && glyphs[p + d].c == t[run.start + d].1);
        if let Some(p) = (0..=glyphs.len() - n).find(|&p| spelled(p)) {
            for d in 0..n {
                used[p + d] = true;
                owner[t[run.start + d].0] = Some((p + d) as u32);
            }
        }
    }
}

fn key(chars: impl Iterator<Item = char>) -> u64 {
    // FNV-1a over the chars.
    chars.fold(0xcbf2_9ce4_8422_2325, |h, c| {
        (h ^ u64::from(u32::from(c))).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// A line being built: its chars, box, and last glyph.
struct LineAcc {
    start: usize,
    end: usize,
    rect: Rect,
    last: usize,
}

/// The lines of `text`: runs of aligned chars whose glyphs sit side by side on one baseline
/// (chars of one span always share a line), in points. A line's box also takes in the glyphs
/// after its last char that no char claimed in the same span (the hyphen of a word the text
/// joined again).
pub(crate) fn lines(
    text: &str,
    owner: &[Option<u32>],
    glyphs: &[Glyph],
) -> Vec<(usize, usize, Rect)> {
    let mut claimed = vec![false; glyphs.len()];
    for g in owner.iter().flatten() {
        if let Some(c) = claimed.get_mut(*g as usize) {
            *c = true;
        }
    }
    let close = |l: LineAcc, out: &mut Vec<(usize, usize, Rect)>| {
        let mut rect = l.rect;
        let span = glyphs[l.last].span;
        for (g, taken) in glyphs.iter().zip(&claimed).skip(l.last + 1) {
            if g.span != span || *taken {
                break;
            }
            rect = rect.union(&g.rect);
        }
        out.push((l.start, l.end, rect));
    };
    let mut out = Vec::new();
    let mut cur: Option<LineAcc> = None;
    // Whether a line break of the text lies between the last aligned char and this one.
    let mut newline = false;
    for (ci, (c, g)) in text.chars().zip(owner).enumerate() {
        let Some((gi, glyph)) = g.and_then(|g| glyphs.get(g as usize).map(|x| (g as usize, x)))
        else {
            newline |= c == '\n';
            continue;
        };
        if let Some(l) = cur.as_mut()
            && continues(&glyphs[l.last], glyph, newline)
        {
            l.end = ci + 1;
            l.rect = l.rect.union(&glyph.rect);
            l.last = gi;
            newline = false;
            continue;
        }
        if let Some(l) = cur.take() {
            close(l, &mut out);
        }
        cur = Some(LineAcc {
            start: ci,
            end: ci + 1,
            rect: glyph.rect,
            last: gi,
        });
        newline = false;
    }
    if let Some(l) = cur {
        close(l, &mut out);
    }
    out
}

/// Whether glyph `g` continues the line whose last glyph is `p`: the same span, or the same
/// row a little to the right (or to the left, in right-to-left text). The text's own line break between them allows a smaller gap
/// (the gutter between columns read row by row), none allows a wide one (justified text,
/// table cells read across).
fn continues(p: &Glyph, g: &Glyph, newline: bool) -> bool {
    if p.span == g.span {
        return true;
    }
    let (a, b) = (&p.rect, &g.rect);
    let low = a.height().min(b.height()).max(0.01);
    let high = a.height().max(b.height());
    let gap = if newline { 0.8 } else { 4.0 } * high;
    let rightward = b.x0 >= a.x0 - 0.5 * high && b.x0 - a.x1 <= gap;
    // Right-to-left text reads on leftwards (and its embedded left-to-right words start
    // further left again).
    let leftward = (is_rtl(p.c) || is_rtl(g.c)) && b.x1 <= a.x1 + 0.5 * high && a.x0 - b.x1 <= gap;
    a.v_overlap(b) >= 0.5 * low && (rightward || leftward)
}

/// Block numbers for lines in reading order: a new block starts where a line is neither
/// further along the same row nor the next one down the same column (it goes back up, leaves
/// the column's horizontal extent, or follows after a larger gap than the block's line
/// pitch), or where the font size changes.
pub(crate) fn blocks(lines: &[Rect]) -> Vec<u32> {
    let mut out = Vec::with_capacity(lines.len());
    let mut block = 0u32;
    // The current block's extent, last line and line pitch.
    let mut cur: Option<(Rect, Rect, Option<f32>)> = None;
    for r in lines {
        let h = r.height();
        let joins = cur.as_ref().map(|(extent, p, pitch)| {
            let hp = p.height();
            let (low, high) = (h.min(hp).max(0.01), h.max(hp));
            // Read on along the same row (the cells of a table row): one block.
            let same_row = p.v_overlap(r) >= 0.5 * low && r.x0 >= p.x1 - 0.5 * high;
            if same_row {
                return (true, *pitch);
            }
            let step = r.y0 - p.y0;
            let below = step > 0.5 * low;
            let in_column = r.h_overlap(extent) > 0.0;
            let same_size = (h - hp).abs() <= 0.25 * high;
            let close = match pitch {
                Some(pitch) => step <= 1.3 * pitch + 0.1 * high,
                None => r.y0 - p.y1 <= 1.0 * high,
            };
            (
                below && in_column && same_size && close,
                Some(pitch.unwrap_or(step)),
            )
        });
        match (joins, cur.as_mut()) {
            (Some((true, pitch)), Some((extent, last, p))) => {
                *extent = extent.union(r);
                *last = *r;
                *p = pitch;
            }
            _ => {
                if cur.is_some() {
                    block += 1;
                }
                cur = Some((*r, *r, None));
            }
        }
        out.push(block);
    }
    out
}

/// The layout of a page whose text is `text`: its lines with blocks and boxes. The text is
/// left as it is but for one repair: left-to-right words inside right-to-left runs that
/// pdf_oxide reversed with the run are turned back (see [`unreverse_ltr_runs`]).
pub(crate) fn layout(text: &mut String, spans: &[TextSpan], frame: &Frame) -> Vec<TextLine> {
    let glyphs = glyphs(spans, frame);
    let mut owner = align(text, &glyphs);
    unreverse_ltr_runs(text, &mut owner, &glyphs);
    let found = lines(text, &owner, &glyphs);
    let chars: Vec<char> = text.chars().collect();
    let kept: Vec<(usize, usize, Rect, BBox)> = found
        .into_iter()
        .filter_map(|(s, e, r)| frame.fractions(&r).map(|b| (s, e, r, b)))
        .collect();
    let rects: Vec<Rect> = kept.iter().map(|k| k.2).collect();
    let ids = blocks(&rects);
    kept.iter()
        .zip(ids)
        .map(|(&(s, e, _, bbox), block)| TextLine {
            start: u32::try_from(s).unwrap_or(u32::MAX),
            end: u32::try_from(e).unwrap_or(u32::MAX),
            block,
            bbox,
            rtl: reads_rtl(&chars[s..e].iter().collect::<String>()),
        })
        .collect()
}

/// Whether `c` is part of a left-to-right word (letters and digits of other scripts).
fn ltr_word_char(c: char) -> bool {
    c.is_alphanumeric() && !is_rtl(c)
}

/// Turns back the left-to-right words (Latin words, numbers) that pdf_oxide reversed along
/// with the right-to-left run around them: a run of such chars (with single punctuation
/// marks inside, as in `right-to-left` or `3.14`) all drawn by glyphs of one flipped span.
/// The run's chars, and their glyphs, are reversed in place, so offsets do not move.
pub(crate) fn unreverse_ltr_runs(text: &mut String, owner: &mut [Option<u32>], glyphs: &[Glyph]) {
    let mut chars: Vec<char> = text.chars().collect();
    let flipped_span = |owner: &[Option<u32>], ci: usize| {
        owner[ci]
            .and_then(|g| glyphs.get(g as usize))
            .and_then(|g| g.flipped.then_some(g.span))
    };
    let mut changed = false;
    let mut i = 0;
    while i < chars.len() {
        if !ltr_word_char(chars[i]) {
            i += 1;
            continue;
        }
        let start = i;
        let mut end = i + 1;
        loop {
            if end < chars.len() && ltr_word_char(chars[end]) {
                end += 1;
            } else if end + 1 < chars.len()
                && !chars[end].is_whitespace()
                && !chars[end].is_alphanumeric()
                && !is_rtl(chars[end])
                && ltr_word_char(chars[end + 1])
            {
                end += 2;
            } else {
                break;
            }
        }
        i = end;
        let span = flipped_span(owner, start);
        if end - start >= 2
            && span.is_some()
            && (start..end).all(|ci| flipped_span(owner, ci) == span)
        {
            chars[start..end].reverse();
            owner[start..end].reverse();
            changed = true;
        }
    }
    if changed {
        *text = chars.into_iter().collect();
    }
}

/// The layout of page `index` of `doc`, whose extracted text is `text` (see [`layout`] for
/// the one repair it may make); empty when the page geometry is unusable or the spans cannot
/// be read.
pub(crate) fn page_layout(doc: &PdfDocument, index: usize, text: &mut String) -> Vec<TextLine> {
    if text.trim().is_empty() {
        return Vec::new();
    }
    let Ok(media) = doc.get_page_media_box(index) else {
        return Vec::new();
    };
    let visible = doc.get_page_visible_box(index).unwrap_or(media);
    let rot = doc.get_page_rotation(index).unwrap_or(0);
    let Some(frame) = Frame::new(media, visible, rot) else {
        return Vec::new();
    };
    match doc.extract_spans(index) {
        Ok(spans) => layout(text, &spans, &frame),
        Err(_) => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Glyphs for `words` set in a row from `(x, y)` (points, y down), 10 pt high, each char
    /// 5 pt wide and a space 3 pt wide; one span per call.
    fn row(out: &mut Vec<Glyph>, span: u32, x: f32, y: f32, text: &str) {
        let mut cx = x;
        for c in text.chars() {
            if c == ' ' {
                cx += 3.0;
                continue;
            }
            out.push(Glyph {
                c,
                rect: Rect {
                    x0: cx,
                    y0: y,
                    x1: cx + 5.0,
                    y1: y + 10.0,
                },
                span,
                flipped: false,
            });
            cx += 5.0;
        }
    }

    #[test]
    fn alignment_skips_removed_hyphens_and_follows_reordered_text() {
        let mut g = Vec::new();
        // Drawn: the right column first, then the left one with a hyphenated word.
        row(&mut g, 0, 300.0, 100.0, "right column text");
        row(&mut g, 1, 50.0, 100.0, "left col-");
        row(&mut g, 2, 50.0, 112.0, "umn words");
        // Read: left column first, de-hyphenated.
        let text = "left column words\nright column text";
        let owner = align(text, &g);
        let chars: Vec<char> = text.chars().collect();
        for (i, o) in owner.iter().enumerate() {
            if chars[i].is_whitespace() {
                assert!(o.is_none());
                continue;
            }
            let gi = o.unwrap_or_else(|| panic!("char {i} {:?} unmatched", chars[i])) as usize;
            assert_eq!(g[gi].c, chars[i]);
        }
        // "col" and "umn" come from two spans, on two rows.
        let found = lines(text, &owner, &g);
        let spans: Vec<(usize, usize)> = found.iter().map(|l| (l.0, l.1)).collect();
        assert_eq!(spans, [(0, 8), (8, 17), (18, 35)]);
        assert_eq!(&text[0..8], "left col");
    }

    #[test]
    fn blocks_follow_columns_and_gaps() {
        let line = |x: f32, y: f32, w: f32| Rect {
            x0: x,
            y0: y,
            x1: x + w,
            y1: y + 10.0,
        };
        let lines = [
            line(100.0, 50.0, 200.0), // title
            line(50.0, 90.0, 150.0),  // left column, after a gap
            line(50.0, 102.0, 150.0),
            line(50.0, 114.0, 140.0),
            line(250.0, 90.0, 150.0), // right column: back up
            line(250.0, 102.0, 150.0),
            line(250.0, 140.0, 150.0), // a paragraph gap
        ];
        assert_eq!(blocks(&lines), [0, 1, 1, 1, 2, 2, 3]);
    }

    #[test]
    fn boxes_merge_whole_lines_and_cut_partial_ones() {
        let b = |y0: f32| BBox {
            x0: 0.1,
            y0,
            x1: 0.5,
            y1: y0 + 0.01,
        };
        let lines = [
            TextLine {
                start: 0,
                end: 10,
                block: 0,
                bbox: b(0.10),
                rtl: false,
            },
            TextLine {
                start: 11,
                end: 21,
                block: 0,
                bbox: b(0.12),
                rtl: false,
            },
            TextLine {
                start: 22,
                end: 32,
                block: 0,
                bbox: b(0.14),
                rtl: false,
            },
            TextLine {
                start: 33,
                end: 43,
                block: 1,
                bbox: b(0.50),
                rtl: false,
            },
        ];
        // Half of line 0, lines 1 and 2 whole, all of block 1.
        let boxes = boxes_for(&lines, 5, 43);
        assert_eq!(boxes.len(), 3, "{boxes:?}");
        assert!((boxes[0].x0 - 0.3).abs() < 1e-6 && boxes[0].x1 == 0.5);
        assert_eq!(boxes[1], union(b(0.12), b(0.14)));
        assert_eq!(boxes[2], b(0.50));
        // Inside one line.
        let inner = boxes_for(&lines, 12, 16);
        assert_eq!(inner.len(), 1);
        assert!(inner[0].x0 > 0.1 && inner[0].x1 < 0.5);
        assert!(boxes_for(&lines, 44, 50).is_empty());
    }

    #[test]
    fn frames_turn_and_crop() -> Result<(), String> {
        // A 200 x 100 page shown turned by 90°: 100 wide, 200 high.
        let f =
            Frame::new((0.0, 0.0, 200.0, 100.0), (0.0, 0.0, 200.0, 100.0), 90).ok_or("no frame")?;
        // The user-space top-left corner ends at the displayed top-right.
        let r = f.user_rect(0.0, 90.0, 10.0, 10.0);
        let b = f.fractions(&r).ok_or("no box")?;
        assert!(
            (b.x0 - 0.9).abs() < 1e-6 && (b.x1 - 1.0).abs() < 1e-6,
            "{b:?}"
        );
        assert!(b.y0.abs() < 1e-6 && (b.y1 - 0.05).abs() < 1e-6, "{b:?}");
        // A CropBox with an origin: fractions of the crop.
        let f = Frame::new((0.0, 0.0, 600.0, 800.0), (100.0, 100.0, 500.0, 700.0), 0)
            .ok_or("no frame")?;
        let b = f
            .fractions(&f.user_rect(100.0, 690.0, 200.0, 10.0))
            .ok_or("no box")?;
        assert!(b.x0.abs() < 1e-6 && (b.x1 - 0.5).abs() < 1e-6, "{b:?}");
        assert!(
            b.y0.abs() < 1e-6 && (b.y1 - 10.0 / 600.0).abs() < 1e-6,
            "{b:?}"
        );
        // Outside the crop: nothing.
        assert!(f.fractions(&f.user_rect(0.0, 0.0, 50.0, 50.0)).is_none());
        Ok(())
    }

    #[test]
    fn reversed_ltr_words_in_flipped_runs_are_turned_back() {
        // pdf_oxide's text of a Hebrew line with a word, a version and a year inside, all
        // reversed with the line; its glyphs come from one flipped span, in text order.
        let mut text = String::from("גרסה oiloF 3.2 6202 חדשה");
        // One glyph a non-space char, in text order (the boxes do not matter here).
        let glyphs_of = |text: &str, flipped: bool| -> Vec<Glyph> {
            let rect = Rect {
                x0: 0.0,
                y0: 0.0,
                x1: 5.0,
                y1: 10.0,
            };
            text.chars()
                .filter(|c| !c.is_whitespace())
                .map(|c| Glyph {
                    c,
                    rect,
                    span: 0,
                    flipped,
                })
                .collect()
        };
        let glyphs = glyphs_of(&text, true);
        let mut owner = align(&text, &glyphs);
        let before = owner.clone();
        unreverse_ltr_runs(&mut text, &mut owner, &glyphs);
        assert_eq!(text, "גרסה Folio 2.3 2026 חדשה");
        // Each char keeps the glyph that drew it.
        let chars: Vec<char> = text.chars().collect();
        for (c, g) in chars.iter().zip(&owner) {
            if let Some(g) = g {
                assert_eq!(glyphs[*g as usize].c, *c);
            }
        }
        assert_ne!(owner, before);
        // Glyphs laid out left to right (not flipped): the text is left alone.
        let mut text = String::from("abc דה fed");
        let glyphs = glyphs_of(&text, false);
        let mut owner = align(&text, &glyphs);
        unreverse_ltr_runs(&mut text, &mut owner, &glyphs);
        assert_eq!(text, "abc דה fed");
    }

    #[test]
    fn rtl_lines_read_on_leftwards() {
        // Two Hebrew words drawn as separate spans, read right to left: one line.
        let mut g = Vec::new();
        row(&mut g, 0, 100.0, 0.0, "אב");
        row(&mut g, 1, 80.0, 0.0, "גד");
        let text = "אב גד";
        let owner = align(text, &g);
        assert_eq!(lines(text, &owner, &g).len(), 1);
        // Latin words drawn that way are two lines (the second goes back left).
        let mut g = Vec::new();
        row(&mut g, 0, 100.0, 0.0, "ab");
        row(&mut g, 1, 80.0, 0.0, "cd");
        let owner = align("ab cd", &g);
        assert_eq!(lines("ab cd", &owner, &g).len(), 2);
    }
}
