#include "alert.h"

#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <wchar.h>

#define REPLACEMENT 0xFFFDu
#define TITLE "Message from the server"

/* Output that counts what it could not store, as snprintf does. */
typedef struct sbuf {
  char *out;
  size_t cap; /* bytes that may be stored, not counting the NUL */
  size_t len; /* bytes the whole rendering takes */
} sbuf_t;

/* The frame's pieces: utf8 box drawing or plain ASCII. */
typedef struct frame {
  const char *tl, *top, *tr;   /* top border */
  const char *side;            /* left and right edges */
  const char *ml, *mid, *mr;   /* rule under the header */
  const char *bl, *bottom, *br;
} frame_t;

static const frame_t frame_utf8 = {
  "\u2554", "\u2550", "\u2557", "\u2551",
  "\u255f", "\u2500", "\u2562", "\u255a", "\u2550", "\u255d"
};
static const frame_t frame_ascii = {
  "+", "-", "+", "|", "+", "-", "+", "+", "-", "+"
};

static void sb_put(sbuf_t *b, const char *s, size_t n) {
  if (b->len < b->cap) {
    size_t room = b->cap - b->len;
    memcpy(b->out + b->len, s, n < room ? n : room);
  }
  b->len += n;
}

static void sb_puts(sbuf_t *b, const char *s) { sb_put(b, s, strlen(s)); }

static void sb_repeat(sbuf_t *b, const char *s, int n) {
  size_t len = strlen(s);
  for (int i = 0; i < n; i++) sb_put(b, s, len);
}

/* Appends one code point, already sanitized for the output mode. */
static void sb_cp(sbuf_t *b, uint32_t cp) {
  char u[4];
  size_t n;
  if (cp < 0x80) {
    u[0] = (char)cp;
    n = 1;
  } else if (cp < 0x800) {
    u[0] = (char)(0xC0 | (cp >> 6));
    u[1] = (char)(0x80 | (cp & 0x3F));
    n = 2;
  } else if (cp < 0x10000) {
    u[0] = (char)(0xE0 | (cp >> 12));
    u[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
    u[2] = (char)(0x80 | (cp & 0x3F));
    n = 3;
  } else {
    u[0] = (char)(0xF0 | (cp >> 18));
    u[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    u[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    u[3] = (char)(0x80 | (cp & 0x3F));
    n = 4;
  }
  sb_put(b, u, n);
}

/*
 * Decodes one UTF-8 sequence at s (n > 0 bytes left) into *cp and returns
 * its length; an invalid, overlong, surrogate or truncated sequence yields
 * REPLACEMENT for its first byte only, so decoding resynchronizes.
 */
static size_t utf8_next(const unsigned char *s, size_t n, uint32_t *cp) {
  uint32_t c = s[0], min;
  size_t len;
  if (c < 0x80) {
    *cp = c;
    return 1;
  }
  if (c >= 0xC2 && c <= 0xDF) {
    len = 2; c &= 0x1F; min = 0x80;
  } else if (c >= 0xE0 && c <= 0xEF) {
    len = 3; c &= 0x0F; min = 0x800;
  } else if (c >= 0xF0 && c <= 0xF4) {
    len = 4; c &= 0x07; min = 0x10000;
  } else {
    *cp = REPLACEMENT;
    return 1;
  }
  if (len > n) {
    *cp = REPLACEMENT;
    return 1;
  }
  for (size_t i = 1; i < len; i++) {
    if ((s[i] & 0xC0) != 0x80) {
      *cp = REPLACEMENT;
      return 1;
    }
    c = (c << 6) | (s[i] & 0x3F);
  }
  if (c < min || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF)) {
    *cp = REPLACEMENT;
    return 1;
  }
  *cp = c;
  return len;
}

/*
 * Decodes text into a new array of displayable code points (caller frees): "\n" stays as the paragraph break, "\r" goes, a tab
 * becomes a space, other controls and anything the mode cannot show
 * become REPLACEMENT or '?'. Trailing spaces and newlines are dropped so a
 * message ending in "\n" does not grow an empty line. Returns NULL when
 * memory runs out.
 */
static uint32_t *decode_text(const char *text, int utf8, size_t *count) {
  const unsigned char *s = (const unsigned char *)text;
  size_t n = strlen(text), i = 0, k = 0;
  uint32_t *cps = malloc((n + 1) * sizeof(*cps));
  if (cps == NULL) return NULL;
  while (i < n) {
    uint32_t cp;
    i += utf8_next(s + i, n - i, &cp);
    if (cp == '\r') continue;
    if (cp == '\t') cp = ' ';
    if ((cp < 0x20 && cp != '\n') || (cp >= 0x7F && cp <= 0x9F))
      cp = REPLACEMENT;
    if (!utf8 && cp >= 0x80) cp = '?';
    cps[k++] = cp;
  }
  while (k > 0 && (cps[k - 1] == ' ' || cps[k - 1] == '\n')) k--;
  *count = k;
  return cps;
}

/* The display columns of a code point: 2 for wide (CJK, most emoji), 0
 * for combining marks, as the terminal's locale says (wcwidth); one for
 * what it does not know. */
static size_t cp_width(uint32_t cp) {
  int w = cp < 0x80 ? 1 : wcwidth((wchar_t)cp);
  return w < 0 ? 1 : (size_t)w;
}

/* Text laid out by columns: col[i] is the width of cps[0..i). */
typedef struct text {
  const uint32_t *cps;
  size_t *col;
  size_t n;
} text_t;

static size_t cols(const text_t *t, size_t from, size_t to) {
  return t->col[to] - t->col[from];
}

/* "║ " + cps[from..to) + padding to `inner` columns + " ║\n". */
static void emit_line(sbuf_t *b, const frame_t *f, const text_t *t,
                      size_t from, size_t to, int inner) {
  sb_puts(b, f->side);
  sb_put(b, " ", 1);
  for (size_t i = from; i < to; i++) sb_cp(b, t->cps[i]);
  sb_repeat(b, " ", inner - (int)cols(t, from, to));
  sb_put(b, " ", 1);
  sb_puts(b, f->side);
  sb_put(b, "\n", 1);
}

/* The end of the longest piece from `from` (before `to`) that fits in
 * width columns; at least one code point, so a wide one in a box too
 * narrow for it still moves on. */
static size_t fit(const text_t *t, size_t from, size_t to, size_t width) {
  size_t e = from + 1;
  while (e < to && cols(t, from, e + 1) <= width) e++;
  return e;
}

/*
 * Lays out the text in lines of at most `inner` columns. Lines are
 * contiguous ranges of cps: spaces inside a line are kept as written,
 * spaces where a line breaks are dropped, and a paragraph's indentation is
 * kept when its first word still fits after it. Each paragraph gives at
 * least one line, so empty text gives one empty line.
 */
static void emit_wrapped(sbuf_t *b, const frame_t *f, const text_t *t,
                         int inner) {
  const uint32_t *cps = t->cps;
  size_t n = t->n, para = 0;
  size_t width = (size_t)inner;
  for (;;) {
    size_t end = para, i = para, ls = para, le = para;
    int open = 0;
    while (end < n && cps[end] != '\n') end++;
    while (i < end) {
      size_t s0 = i, s1, w1;
      while (i < end && cps[i] == ' ') i++;
      s1 = i;
      while (i < end && cps[i] != ' ') i++;
      w1 = i;
      if (s1 == w1) break; /* only trailing spaces were left */
      if (!open && s0 == para && cols(t, s0, w1) <= width) {
        ls = s0;
        le = w1;
        open = 1;
        continue;
      }
      if (open && cols(t, ls, w1) <= width) {
        le = w1;
        continue;
      }
      if (open) emit_line(b, f, t, ls, le, inner);
      for (ls = s1; cols(t, ls, w1) > width;) {
        size_t e = fit(t, ls, w1, width);
        emit_line(b, f, t, ls, e, inner);
        ls = e;
      }
      le = w1;
      open = 1;
    }
    emit_line(b, f, t, ls, open ? le : ls, inner);
    if (end >= n) break;
    para = end + 1;
  }
}

/* Measures cps[0..n) into t; -1 when memory runs out. */
static int measure(text_t *t, const uint32_t *cps, size_t n) {
  t->cps = cps;
  t->n = n;
  t->col = malloc((n + 1) * sizeof(*t->col));
  if (t->col == NULL) return -1;
  t->col[0] = 0;
  for (size_t i = 0; i < n; i++)
    t->col[i + 1] = t->col[i] + (cps[i] == '\n' ? 0 : cp_width(cps[i]));
  return 0;
}

/* A border line: left corner, `fill` for the inner columns, right corner. */
static void emit_rule(sbuf_t *b, const char *l, const char *fill,
                      const char *r, int width) {
  sb_puts(b, l);
  sb_repeat(b, fill, width - 2);
  sb_puts(b, r);
  sb_put(b, "\n", 1);
}

/*
 * The header: the title and the time on one line when both fit, the time
 * right-aligned; otherwise "title time" wrapped like the text.
 */
static int emit_header(sbuf_t *b, const frame_t *f, const char *time,
                       int inner, int utf8) {
  size_t tlen = strlen(TITLE), timelen = time ? strlen(time) : 0;
  char *head = malloc(tlen + timelen + 2);
  uint32_t *cps;
  size_t n;
  text_t t;
  if (head == NULL) return -1;
  memcpy(head, TITLE, tlen);
  head[tlen] = '\0';
  if (timelen > 0) {
    head[tlen] = ' ';
    memcpy(head + tlen + 1, time, timelen + 1);
  }
  cps = decode_text(head, utf8, &n);
  free(head);
  if (cps == NULL || measure(&t, cps, n) < 0) {
    free(cps);
    return -1;
  }
  if (n > tlen + 1 && cols(&t, 0, n) + 1 <= (size_t)inner) {
    sb_puts(b, f->side);
    sb_put(b, " ", 1);
    for (size_t i = 0; i < tlen; i++) sb_cp(b, cps[i]);
    sb_repeat(b, " ", inner - (int)cols(&t, 0, n) + 1);
    for (size_t i = tlen + 1; i < n; i++) sb_cp(b, cps[i]);
    sb_put(b, " ", 1);
    sb_puts(b, f->side);
    sb_put(b, "\n", 1);
  } else {
    emit_wrapped(b, f, &t, inner);
  }
  free(t.col);
  free(cps);
  return 0;
}

int alert_render(char *out, size_t outlen, const char *time,
                 const char *text, int width, int utf8) {
  const frame_t *f = utf8 ? &frame_utf8 : &frame_ascii;
  sbuf_t b = {out, outlen > 0 ? outlen - 1 : 0, 0};
  uint32_t *cps = NULL;
  text_t t = {NULL, NULL, 0};
  size_t n;
  int inner, rc = -1;

  if (width < ALERT_MIN_WIDTH) width = ALERT_MIN_WIDTH;
  inner = width - 4;
  cps = decode_text(text ? text : "", utf8, &n);
  if (cps == NULL || measure(&t, cps, n) < 0) goto done;
  emit_rule(&b, f->tl, f->top, f->tr, width);
  if (emit_header(&b, f, time, inner, utf8) < 0) goto done;
  emit_rule(&b, f->ml, f->mid, f->mr, width);
  emit_wrapped(&b, f, &t, inner);
  emit_rule(&b, f->bl, f->bottom, f->br, width);
  if (b.len > INT_MAX) goto done;
  rc = (int)b.len;

done:
  if (outlen > 0) out[b.len < b.cap ? b.len : b.cap] = '\0';
  free(t.col);
  free(cps);
  return rc;
}
