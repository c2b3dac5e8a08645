"""The text of an HTML fragment, read with the standard library's HTML parser (not a pattern): tags become
spaces, comments and the bodies of <script> and <style> go, and a `<` that opens no HTML element stays as
text, so "I <3 it", "a < b" and "<unknown words>" lose nothing."""

from __future__ import annotations

import html
import re
from html.parser import HTMLParser

# Elements of HTML (current and obsolete ones still found in product pages); any other name is text.
ELEMENTS = frozenset(
    """a abbr acronym address area article aside audio b base basefont bdi bdo big blink blockquote body br
    button canvas caption center cite code col colgroup data datalist dd del details dfn dialog dir div dl dt em
    embed fieldset figcaption figure font footer form frame frameset h1 h2 h3 h4 h5 h6 head header hgroup hr
    html i iframe img input ins kbd label legend li link main map mark marquee math menu meta meter nav nobr
    noscript object ol optgroup option output p param picture pre progress q rp rt ruby s samp script search
    section select small source span strike strong style sub summary sup svg table tbody td template textarea
    tfoot th thead time title tr track tt u ul var video wbr""".split()
)
HIDDEN = frozenset({"script", "style", "template"})  # their bodies are code, not description


class _TextCollector(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.hidden = 0

    def handle_starttag(self, tag, attrs):
        if tag not in ELEMENTS:
            self.handle_data(self.get_starttag_text())
            return
        self.hidden += tag in HIDDEN
        self.parts.append(" ")

    def handle_startendtag(self, tag, attrs):  # <br/>: no body to hide
        if tag not in ELEMENTS:
            self.handle_data(self.get_starttag_text())
        else:
            self.parts.append(" ")

    def handle_endtag(self, tag):
        if tag not in ELEMENTS:
            self.handle_data(f"</{tag}>")
            return
        if tag in HIDDEN and self.hidden:
            self.hidden -= 1
        self.parts.append(" ")

    def handle_data(self, data):
        if not self.hidden:
            self.parts.append(data)

    def handle_comment(self, data):
        self.parts.append(" ")

    handle_decl = handle_pi = unknown_decl = handle_comment


# A known element's bare tag (<br>, <p>, </b>, <br/>), which the parser turns into one space like this
# pattern does; most product markup is only these, and a pattern is much faster than the parser.
_NAMES = "|".join(sorted(ELEMENTS - HIDDEN))
_BARE_TAG = re.compile(rf"</?(?:{_NAMES})\s*/?>", re.IGNORECASE)


def html_text(fragment: str) -> str:
    """`fragment` without its markup (whitespace is left for the caller to collapse)."""
    bare, tags = _BARE_TAG.subn(" ", fragment)
    if tags == fragment.count("<"):  # every `<` opens a bare tag: the parser would give the same text,
        return html.unescape(bare) if "&" in bare else bare  # whose text between tags is unescaped
    return parsed_html_text(fragment)


def parsed_html_text(fragment: str) -> str:
    """html_text through the HTML parser, for any fragment."""
    collector = _TextCollector()
    collector.feed(fragment)
    collector.close()
    return "".join(collector.parts)
