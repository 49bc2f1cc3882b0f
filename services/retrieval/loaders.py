"""Files to documents: Markdown, plain text, HTML and PDF."""

from collections.abc import Iterator
from pathlib import Path

from pypdf import PdfReader
from pypdf.errors import PyPdfError
from selectolax.lexbor import LexborHTMLParser

from ragft.errors import UserFacingError
from services.retrieval.schemas import DocumentIn

SUPPORTED_SUFFIXES = (".md", ".markdown", ".txt", ".html", ".htm", ".pdf")


class UnreadableFile(UserFacingError):
    pass


def find_files(paths: list[Path]) -> Iterator[tuple[Path, Path]]:
    """Yields (file, root) for each supported file; root is what the document id is relative to."""
    for path in paths:
        if path.is_dir():
            for file in sorted(path.rglob("*")):
                if file.is_file() and file.suffix.lower() in SUPPORTED_SUFFIXES:
                    yield file, path
        elif path.is_file():
            if path.suffix.lower() not in SUPPORTED_SUFFIXES:
                raise UnreadableFile(f"{path}: unsupported file type (use {', '.join(SUPPORTED_SUFFIXES)})")
            yield path, path.parent
        else:
            raise UnreadableFile(f"{path}: no such file or folder")


def _html_text(raw: str) -> tuple[str, str]:
    tree = LexborHTMLParser(raw)
    title_node = tree.css_first("title")
    title = title_node.text(strip=True) if title_node else ""
    for node in tree.css("script, style, noscript, nav, footer"):
        node.decompose()
    body = tree.body or tree.root
    text = body.text(separator="\n", strip=True) if body else ""
    return title, text


def _pdf_text(path: Path) -> str:
    return "\n\n".join(page.extract_text() or "" for page in PdfReader(path).pages)


def load_document(file: Path, root: Path) -> DocumentIn:
    suffix = file.suffix.lower()
    metadata: dict[str, str] = {
        "source": file.relative_to(root).as_posix(),
        "format": suffix.lstrip("."),
    }
    try:
        text = _pdf_text(file) if suffix == ".pdf" else file.read_text(encoding="utf-8")
        if suffix in (".html", ".htm"):
            title, text = _html_text(text)
            if title:
                metadata["title"] = title
    except (OSError, UnicodeDecodeError, PyPdfError) as exc:
        raise UnreadableFile(f"{file}: {exc}") from exc
    if not text.strip():
        raise UnreadableFile(f"{file}: no text in it")
    doc_id = file.relative_to(root).with_suffix("").as_posix()
    return DocumentIn(id=doc_id, text=text, metadata=metadata)
