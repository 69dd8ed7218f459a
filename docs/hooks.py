"""MkDocs hooks (mkdocs.yml: ``hooks``) for what the plugins leave behind.

* The navigation file that mkdocs-literate-nav reads, ``SUMMARY.md``, would be published as a page of its own
  (a bare list of links titled "SUMMARY"): it is dropped once literate-nav has read it.
* A sitemap lists absolute URLs, which only ``site_url`` gives; without it MkDocs writes an empty
  ``sitemap.xml``, which tells a search engine nothing. Set ``site_url`` (the environment variable
  ``PAPERZOO_SITE_URL``) where the site is published and the sitemap lists every page; without it none is written.
"""

from __future__ import annotations

from pathlib import Path

from mkdocs.plugins import event_priority


@event_priority(-200)  # after literate-nav (-100), which reads the file in its on_files
def on_files(files, config):
    summary = files.get_file_from_path("SUMMARY.md")
    if summary is not None:
        files.remove(summary)
    return files


def on_post_build(config):
    if not config.site_url:
        for name in ("sitemap.xml", "sitemap.xml.gz"):
            (Path(config.site_dir) / name).unlink(missing_ok=True)
