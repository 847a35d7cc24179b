"""Hidden solutions: an admonition with the class ``dropdown`` becomes a ``<details>`` element.

The chapters write each exercise's solution as::

    .. admonition:: Solution
       :class: dropdown

       The answer…

sphinx-rtd-theme has no dropdowns (sphinx-book-theme and sphinx-togglebutton do, with
JavaScript). Here the HTML and EPUB builders write the admonition as a native
``<details>`` element whose ``<summary>`` is the admonition's title: closed until the
reader clicks it, with no script, and its text still found by the search. Other builders
keep an ordinary admonition. Notebooks get the same with MyST's
``:::{admonition} Solution`` + ``:class: dropdown``.
"""

from __future__ import annotations

from docutils import nodes
from sphinx.application import Sphinx
from sphinx.transforms.post_transforms import SphinxPostTransform


class details(nodes.General, nodes.Element):
    """``<details>``: a block the reader opens."""


class summary(nodes.General, nodes.TextElement):
    """``<summary>``: the always visible title of a ``details`` block."""


def visit_details(self, node: details) -> None:
    classes = " ".join(["admonition", *node["classes"]])
    self.body.append(f'<details class="{classes}">')


def depart_details(self, node: details) -> None:
    self.body.append("</details>\n")


def visit_summary(self, node: summary) -> None:
    self.body.append('<summary class="admonition-title">')


def depart_summary(self, node: summary) -> None:
    self.body.append("</summary>\n")


class DropdownAdmonitions(SphinxPostTransform):
    """Replace each ``dropdown`` admonition by a ``details`` node, its title by a ``summary``."""

    default_priority = 200
    formats = ("html",)

    def run(self, **kwargs) -> None:
        for node in list(self.document.findall(nodes.Admonition)):
            if "dropdown" not in node["classes"]:
                continue
            block = details(classes=[c for c in node["classes"] if c != "admonition"], ids=node["ids"])
            children = list(node.children)
            if children and isinstance(children[0], nodes.title):
                block += summary("", "", *children.pop(0).children)
            block += children
            node.replace_self(block)


def setup(app: Sphinx) -> dict:
    app.add_node(details, html=(visit_details, depart_details))
    app.add_node(summary, html=(visit_summary, depart_summary))
    app.add_post_transform(DropdownAdmonitions)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
