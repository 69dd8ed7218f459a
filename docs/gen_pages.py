"""Generate the site's pages from the registry (run by mkdocs-gen-files at every `mkdocs build`)."""

from pathlib import Path

import mkdocs_gen_files

from paperzoo.docsite import site_files

root = Path(mkdocs_gen_files.config["config_file_path"]).parent
for path, text in site_files(root, repo_url=mkdocs_gen_files.config.get("repo_url")).items():
    with mkdocs_gen_files.open(path, "wb" if isinstance(text, bytes) else "w") as handle:
        handle.write(text)
