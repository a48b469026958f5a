"""Typed values a signature field may hold besides text and JSON: media, code, tool calls, reasoning, citations.

    class Describe(pl.Signature):
        photo: pl.Image = pl.InputField()
        caption: str = pl.OutputField()

    pl.Predict(Describe)(photo=pl.Image.from_file("cat.png"))

Every class here is a pydantic model derived from ``Type``, and says how it reaches a model:

- **Media** (``Image``, ``Audio``, ``File``) become content parts of the user message, in the shape the
  OpenAI chat API takes (``image_url``, ``input_audio``, ``file``): the adapters put them where the field's
  value goes (``content_parts``), and every other reader of the prompt (a scripted LM, ``inspect_history``)
  sees a short placeholder text instead (``prompt_text``). An LM that cannot take a part says so before it
  sends anything: the embedded llama.cpp model refuses media with a ``ConfigurationError`` naming a backend
  that takes it.
- **Text-like values** (``Code``, ``Reasoning``) are written and read as text: ``Code["python"]`` asks for a
  fenced code block and reads the code out of one.
- **Structured values** (``ToolCalls``, ``Citations``, ``Document``) are written as JSON and read from it.
  A ``ToolCalls`` output beside a ``list[pl.Tool]`` input uses the server's native function calling where the
  LM has it (``supports_function_calling``), and the text protocol elsewhere.

Saved programs stay JSON: each value dumps to plain data (``model_dump(mode="json")``: an image as
``{"url": ...}``, code as its text) and reads back from it when the adapter renders a demo.

Nothing here touches the network or a file unless asked by name: ``Image.from_url`` downloads,
``Image.from_file`` reads a file; a string given to ``Image(...)`` must already be a URL or a ``data:`` URL, so
that a value read from a model's reply can never make promptless read a local file.

Pillow is optional (``pip install 'promptless[images]'``): it is needed only for ``Image.from_PIL`` and for
bytes whose image format the few magic numbers here do not tell.
"""

from __future__ import annotations

import base64
import binascii
import inspect
import json
import mimetypes
import os
import re
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, ClassVar

import pydantic
from pydantic import ConfigDict

from .errors import ConfigurationError, ToolError

# DSPy writes a custom type inside a prompt, and in its saved demos, between these two markers (the content
# parts as JSON in between). Values in that form are read back, so that such demos load.
_DSPY_START = "<<CUSTOM-TYPE-START-IDENTIFIER>>"
_DSPY_END = "<<CUSTOM-TYPE-END-IDENTIFIER>>"

PILLOW_HINT = "pip install 'promptless[images]' (Pillow)"
_UNSET: Any = object()


class Type(pydantic.BaseModel):
    """Base class of the typed values (DSPy's ``dspy.Type``); subclass it for a type of your own.

    What a subclass may give:

    - ``content_parts()``: OpenAI content parts (``[{"type": "image_url", ...}]``) for a value that is not
      text; ``None`` (the default) for one that is written into the prompt as text.
    - ``prompt_text()``: the value as text in a prompt (the placeholder of a media value).
    - ``from_reply(text)``: the value read from a model's reply (default: JSON, validated).
    - ``type_note()``: what a reply must look like, for the prompt (default: the JSON schema).
    - ``format()``: DSPy's spelling: the content parts, else the text.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    def __init__(self, source: Any = _UNSET, /, **data: Any) -> None:
        """``Cls(value)`` reads ``value`` as ``Cls.coerce`` does; ``Cls(field=...)`` sets the fields."""
        try:
            if source is _UNSET:
                super().__init__(**data)
            elif data:
                raise TypeError(f"{type(self).__name__} takes a value or keyword fields, not both")
            else:
                self.__pydantic_validator__.validate_python(source, self_instance=self)
        except pydantic.ValidationError as exc:
            raise ValueError(_first_error(type(self), exc)) from None

    #: True for values written and read as plain text (``Code``, ``Reasoning``): the adapters then treat the
    #: field as text, not JSON (no JSON grammar, no schema note).
    __promptless_text__: ClassVar[bool] = False

    def content_parts(self) -> list[dict[str, Any]] | None:
        return None

    def prompt_text(self) -> str:
        parts = self.content_parts()
        if parts is not None:
            return "<" + type(self).__name__.lower() + ">"
        return json.dumps(self.model_dump(mode="json"), ensure_ascii=False)

    def format(self) -> Any:
        parts = self.content_parts()
        return parts if parts is not None else self.prompt_text()

    @classmethod
    def description(cls) -> str:
        return ""

    @classmethod
    def type_note(cls) -> str | None:
        """What a reply must look like, in words; ``None``: the adapters show the JSON schema."""
        return None

    @classmethod
    def from_reply(cls, text: str) -> Type:
        """The value in a reply's text (raises ``ValueError`` saying why it is not one)."""
        from .values import load_json

        stripped = text.strip()
        fence = re.search(r"```(?:json|JSON)?\s*(.*?)```", stripped, re.S)
        if fence:
            stripped = fence.group(1).strip()
        try:
            data: Any = load_json(stripped)
        except ValueError:
            try:
                import json_repair

                data = json_repair.loads(stripped)
            except Exception:
                data = stripped
        return cls.coerce(data)

    @classmethod
    def coerce(cls, value: Any) -> Type:
        """``value`` as this type (an instance is returned as it is), or ``ValueError`` saying why not."""
        if isinstance(value, cls):
            return value
        try:
            return cls.model_validate(value)
        except pydantic.ValidationError as exc:
            raise ValueError(_first_error(cls, exc)) from None


def _first_error(cls: type, exc: pydantic.ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err.get("loc", ()))
    msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
    article = "an" if cls.__name__[:1].lower() in "aeiou" else "a"
    return f"not {article} {cls.__name__}: {where + ': ' if where else ''}{msg}"


def _dspy_parts(value: str) -> list[dict[str, Any]] | None:
    """The content parts of a value DSPy wrote between its custom-type markers, or None."""
    text = value.strip()
    if not (text.startswith(_DSPY_START) and text.endswith(_DSPY_END)):
        return None
    try:
        parts = json.loads(text[len(_DSPY_START): -len(_DSPY_END)])
    except ValueError:
        return None
    return parts if isinstance(parts, list) and all(isinstance(p, dict) for p in parts) else None


def _size(nbytes: int) -> str:
    if nbytes < 1024:
        return f"{nbytes} bytes"
    if nbytes < 1024 * 1024:
        return f"{nbytes / 1024:.1f} KB"
    return f"{nbytes / (1024 * 1024):.1f} MB"


def _data_url(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


_DATA_URL = re.compile(r"^data:([\w.+-]+/[\w.+-]+)?((?:;[\w.+-]+=[^;,]*)*)(;base64)?,", re.I)


def _data_url_mime(url: str) -> str | None:
    m = _DATA_URL.match(url)
    return (m.group(1) or "text/plain").lower() if m else None


def _b64_bytes(payload: str) -> int:
    """How many bytes base64 text decodes to (from its length)."""
    return len(payload) * 3 // 4 - (len(payload) - len(payload.rstrip("=")))


def _data_url_bytes(url: str) -> int:
    """How many bytes a base64 ``data:`` URL holds."""
    return _b64_bytes(url.partition(",")[2])


def _is_web_url(text: str, schemes: tuple[str, ...] = ("http", "https")) -> bool:
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(text)
    except ValueError:
        return False
    return parts.scheme.lower() in schemes and bool(parts.netloc)


def _download(url: str, what: str, *, verify: bool = True, timeout: float | None = 30.0) -> tuple[bytes, str]:
    """The body of ``url`` and its content type (without parameters), or ``ValueError`` saying why not."""
    if not _is_web_url(url):
        raise ValueError(f"{what}.from_url takes an http(s) URL, got {url[:200]!r}")
    import httpx

    try:
        response = httpx.get(url, follow_redirects=True, verify=verify, timeout=timeout)
    except httpx.HTTPError as exc:
        raise ValueError(f"{what}.from_url could not download {url[:200]!r}: {type(exc).__name__}: {exc}") from None
    if response.status_code >= 400:
        raise ValueError(f"{what}.from_url could not download {url[:200]!r}: HTTP {response.status_code}")
    content_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
    return response.content, content_type


def _read_file(path: str | os.PathLike[str], what: str) -> bytes:
    p = Path(path).expanduser()
    if not p.is_file():
        raise ValueError(f"{what}: no file at {str(p)!r}")
    return p.read_bytes()


# -- images ---------------------------------------------------------------------------------------------

_IMAGE_MAGIC: list[tuple[bytes, int, str]] = [  # (bytes, at offset, MIME type)
    (b"\x89PNG\r\n\x1a\n", 0, "image/png"),
    (b"\xff\xd8\xff", 0, "image/jpeg"),
    (b"GIF87a", 0, "image/gif"),
    (b"GIF89a", 0, "image/gif"),
    (b"WEBP", 8, "image/webp"),
    (b"BM", 0, "image/bmp"),
    (b"II*\x00", 0, "image/tiff"),
    (b"MM\x00*", 0, "image/tiff"),
]


def image_mime(data: bytes) -> str | None:
    """The MIME type of image bytes, from their magic number (Pillow, when installed, for the rest)."""
    for magic, offset, mime in _IMAGE_MAGIC:
        if data[offset: offset + len(magic)] == magic and (mime != "image/webp" or data[:4] == b"RIFF"):
            return mime
    try:
        import io

        from PIL import Image as PILImage
    except ImportError:
        return None
    try:
        with PILImage.open(io.BytesIO(data)) as img:
            fmt = img.format
    except Exception:
        return None
    guessed = mimetypes.types_map.get(f".{fmt.lower()}") if fmt else None
    return guessed if guessed and guessed.startswith("image/") else None


def _pil_data_url(img: Any) -> str:
    import io

    buffer = io.BytesIO()
    fmt = (getattr(img, "format", None) or "PNG").upper()
    try:
        img.save(buffer, format=fmt)
    except (KeyError, OSError, ValueError):  # a format Pillow cannot write back: PNG
        buffer = io.BytesIO()
        fmt = "PNG"
        img.save(buffer, format=fmt)
    mime = mimetypes.types_map.get(f".{fmt.lower()}", "image/png")
    if fmt == "JPEG":
        mime = "image/jpeg"
    return _data_url(buffer.getvalue(), mime)


def _is_pil(value: Any) -> bool:
    return any(c.__module__.startswith("PIL.") and c.__name__ == "Image" for c in type(value).__mro__)


def _image_url(value: Any) -> str:
    """The URL (web or ``data:``) of an image given in any of the forms ``Image`` takes."""
    if isinstance(value, Image):
        return value.url
    if isinstance(value, Mapping):
        if "url" in value:
            return _image_url(value["url"])
        if isinstance(value.get("image_url"), Mapping):  # an OpenAI content part
            return _image_url(value["image_url"].get("url"))
        raise ValueError("an image given as a dict needs a 'url' key, e.g. {'url': 'https://...'}")
    if isinstance(value, str):
        text = value.strip()
        parts = _dspy_parts(text)
        if parts is not None:
            urls = [p.get("image_url", {}).get("url") for p in parts if p.get("type") == "image_url"]
            if len(urls) == 1 and isinstance(urls[0], str):
                return urls[0]
        if text.lower().startswith("data:"):
            if _data_url_mime(text) is None:
                raise ValueError(f"{text[:60]!r}... is not a well-formed data: URL")
            return text
        if _is_web_url(text, ("http", "https", "gs")):
            return text
        raise ValueError(
            f"{text[:200]!r} is not an image URL (http, https or gs) or a data: URL; for a file on disk use "
            "pl.Image.from_file(path), for bytes pl.Image.from_bytes(data)"
        )
    if isinstance(value, (bytes, bytearray, memoryview)):
        data = bytes(value)
        mime = image_mime(data)
        if mime is None:
            raise ValueError(
                "cannot tell the image format of these bytes (not PNG, JPEG, GIF, WebP, BMP or TIFF); pass "
                f"pl.Image.from_bytes(data, mime_type='image/...'), or install Pillow: {PILLOW_HINT}"
            )
        return _data_url(data, mime)
    if isinstance(value, os.PathLike):  # a Path object: the caller's code chose the file, not a model's reply
        return Image.from_file(value).url
    if _is_pil(value):
        return _pil_data_url(value)
    raise ValueError(
        f"an image is a URL, a data: URL, bytes, a pathlib.Path or a PIL image, not a {type(value).__name__}"
    )


class Image(Type):
    """An image: a web URL (``http``, ``https``, ``gs``) or a ``data:`` URL holding the image itself.

    ``Image(url="https://...")``, ``Image("https://...")``, ``Image(png_bytes)``, ``Image(Path("cat.png"))``,
    ``Image(pil_image)``; ``Image.from_url(url)`` downloads, ``Image.from_file(path)`` reads a file,
    ``Image.from_bytes(data, mime_type=...)`` and ``Image.from_PIL(img)`` encode. The OpenAI-compatible client
    sends it as an ``image_url`` content part.
    """

    url: str

    def __init__(self, source: Any = _UNSET, /, **data: Any) -> None:
        if source is not _UNSET:
            if "url" in data:
                raise TypeError("Image takes the image once: Image(source) or Image(url=...), not both")
            data["url"] = source
        super().__init__(**data)

    @pydantic.model_validator(mode="before")
    @classmethod
    def _read(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and set(data) == {"url"}:
            return {"url": _image_url(data["url"])}
        return {"url": _image_url(data)}

    # -- constructors (DSPy's names) ----------------------------------------------------------------
    @classmethod
    def from_url(cls, url: str, download: bool = True, *, verify: bool = True,
                 timeout: float | None = 30.0) -> Image:
        """The image at ``url``, downloaded into a ``data:`` URL (``download=False`` keeps the URL: the
        server the model runs on then fetches it)."""
        if not download:
            return cls(url=url)
        data, content_type = _download(url, "Image", verify=verify, timeout=timeout)
        mime = content_type if content_type.startswith("image/") else image_mime(data)
        if mime is None:
            mime = mimetypes.guess_type(url)[0]
        if mime is None or not mime.startswith("image/"):
            raise ValueError(f"{url[:200]!r} is not an image (content type {content_type or 'unknown'!r})")
        return cls(url=_data_url(data, mime))

    @classmethod
    def from_file(cls, path: str | os.PathLike[str], mime_type: str | None = None) -> Image:
        """The image in a file, as a ``data:`` URL."""
        data = _read_file(path, "Image.from_file")
        mime = mime_type or mimetypes.guess_type(str(path))[0] or image_mime(data)
        if mime is None or not mime.startswith("image/"):
            raise ValueError(f"Image.from_file: {str(path)!r} is not an image file (type {mime or 'unknown'})")
        return cls(url=_data_url(data, mime))

    from_path = from_file

    @classmethod
    def from_bytes(cls, data: bytes, mime_type: str | None = None) -> Image:
        """Image bytes as a ``data:`` URL; the format is read from the bytes unless ``mime_type`` says it."""
        if mime_type is None:
            return cls(bytes(data))
        return cls(url=_data_url(bytes(data), mime_type))

    @classmethod
    def from_PIL(cls, image: Any) -> Image:  # noqa: N802 - DSPy's name
        """A PIL image, encoded in its own format (PNG when it has none)."""
        try:
            import PIL  # noqa: F401
        except ImportError:
            raise ConfigurationError(f"Image.from_PIL needs Pillow: {PILLOW_HINT}") from None
        if not _is_pil(image):
            raise ValueError(f"Image.from_PIL takes a PIL image, got {type(image).__name__}")
        return cls(url=_pil_data_url(image))

    # -- what it is ---------------------------------------------------------------------------------
    @property
    def mime_type(self) -> str | None:
        """The MIME type of a ``data:`` URL image (None for a web URL)."""
        return _data_url_mime(self.url) if self.url.startswith("data:") else None

    def content_parts(self) -> list[dict[str, Any]]:
        return [{"type": "image_url", "image_url": {"url": self.url}}]

    def prompt_text(self) -> str:
        if self.url.startswith("data:"):
            return f"<image: {self.mime_type}, {_size(_data_url_bytes(self.url))}>"
        return f"<image: {self.url}>"

    def __repr__(self) -> str:
        if self.url.startswith("data:"):
            return f"Image(url=<{self.mime_type} data, {_size(_data_url_bytes(self.url))}>)"
        return f"Image(url={self.url!r})"

    __str__ = prompt_text


# -- audio ----------------------------------------------------------------------------------------------

_AUDIO_FORMATS = {"x-wav": "wav", "wave": "wav", "vnd.wave": "wav", "mpeg": "mp3", "mpeg3": "mp3", "x-mp3": "mp3",
                  "x-flac": "flac", "x-m4a": "m4a", "mp4": "m4a"}


def _audio_format(name: str) -> str:
    fmt = name.lower().strip().removeprefix("audio/").removeprefix("x-") if name else ""
    return _AUDIO_FORMATS.get(name.lower().removeprefix("audio/"), _AUDIO_FORMATS.get(fmt, fmt))


def _audio_fields(value: Any, audio_format: str | None) -> dict[str, str]:
    if isinstance(value, Audio):
        return {"data": value.data, "audio_format": value.audio_format}
    if isinstance(value, Mapping):
        if isinstance(value.get("input_audio"), Mapping):  # an OpenAI content part
            value = {"data": value["input_audio"].get("data"), "audio_format": value["input_audio"].get("format")}
        data, fmt = value.get("data"), value.get("audio_format", value.get("format", audio_format))
        if not isinstance(data, str) or not isinstance(fmt, str) or not fmt:
            raise ValueError("audio given as a dict needs 'data' (base64 text) and 'audio_format' (e.g. 'wav')")
        if data.startswith("data:"):
            return _audio_fields(data, fmt)
        try:
            base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("the 'data' of an audio value must be base64 text") from None
        return {"data": data, "audio_format": _audio_format(fmt)}
    if isinstance(value, str):
        text = value.strip()
        parts = _dspy_parts(text)
        if parts is not None and len(parts) == 1 and parts[0].get("type") == "input_audio":
            return _audio_fields(parts[0], audio_format)
        mime = _data_url_mime(text) if text.lower().startswith("data:") else None
        if mime is None:
            raise ValueError(
                f"{text[:200]!r} is not a data: URL of audio; for a file use pl.Audio.from_file(path), for a web "
                "address pl.Audio.from_url(url), for bytes pl.Audio(data, audio_format='wav')"
            )
        if not mime.startswith("audio/"):
            raise ValueError(f"a data: URL of type {mime} is not audio")
        return {"data": text.partition(",")[2], "audio_format": _audio_format(mime)}
    if isinstance(value, (bytes, bytearray, memoryview)):
        if not audio_format:
            raise ValueError("audio bytes need their format: pl.Audio(data, audio_format='wav') (or 'mp3', ...)")
        return {"data": base64.b64encode(bytes(value)).decode("ascii"), "audio_format": _audio_format(audio_format)}
    if isinstance(value, os.PathLike):
        audio = Audio.from_file(value)
        return {"data": audio.data, "audio_format": audio.audio_format}
    raise ValueError(f"audio is a data: URL, bytes with a format, or a pathlib.Path, not a {type(value).__name__}")


class Audio(Type):
    """Audio, held as base64 ``data`` and its ``audio_format`` (``wav``, ``mp3``...).

    ``Audio(data=b64, audio_format="wav")``, ``Audio(wav_bytes, audio_format="wav")``,
    ``Audio("data:audio/wav;base64,...")``, ``Audio.from_file(path)``, ``Audio.from_url(url)``. The
    OpenAI-compatible client sends it as an ``input_audio`` content part.
    """

    data: str
    audio_format: str

    def __init__(self, source: Any = _UNSET, /, **data: Any) -> None:
        if source is not _UNSET:
            if "data" in data:
                raise TypeError("Audio takes the audio once: Audio(source) or Audio(data=...), not both")
            try:
                data = _audio_fields(source, data.pop("audio_format", None) or data.pop("format", None))
            except ValueError as exc:
                raise ValueError(f"not an Audio: {exc}") from None
        super().__init__(**data)

    @pydantic.model_validator(mode="before")
    @classmethod
    def _read(cls, data: Any) -> Any:
        return _audio_fields(data, None)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str], audio_format: str | None = None) -> Audio:
        data = _read_file(path, "Audio.from_file")
        fmt = audio_format
        if fmt is None:
            mime = mimetypes.guess_type(str(path))[0]
            if mime is None or not mime.startswith("audio/"):
                raise ValueError(f"Audio.from_file: cannot tell the audio format of {str(path)!r}; "
                                 "pass audio_format='wav' (or 'mp3', ...)")
            fmt = mime
        return cls(data, audio_format=fmt)

    from_path = from_file

    @classmethod
    def from_url(cls, url: str, *, verify: bool = True, timeout: float | None = 30.0) -> Audio:
        data, content_type = _download(url, "Audio", verify=verify, timeout=timeout)
        mime = content_type if content_type.startswith("audio/") else mimetypes.guess_type(url)[0]
        if mime is None or not mime.startswith("audio/"):
            raise ValueError(f"{url[:200]!r} is not audio (content type {content_type or 'unknown'!r})")
        return cls(data, audio_format=mime)

    @classmethod
    def from_bytes(cls, data: bytes, audio_format: str = "wav") -> Audio:
        return cls(bytes(data), audio_format=audio_format)

    def content_parts(self) -> list[dict[str, Any]]:
        return [{"type": "input_audio", "input_audio": {"data": self.data, "format": self.audio_format}}]

    def prompt_text(self) -> str:
        return f"<audio: {self.audio_format}, {_size(_b64_bytes(self.data))}>"

    def __repr__(self) -> str:
        return f"Audio(<{self.audio_format} data, {_size(_b64_bytes(self.data))}>)"

    __str__ = prompt_text


# -- files ------------------------------------------------------------------------------------------------

def _file_fields(value: Any) -> dict[str, Any]:
    if isinstance(value, File):
        return value.model_dump(exclude_none=True)
    if isinstance(value, Mapping):
        if isinstance(value.get("file"), Mapping) and value.get("type") == "file":  # an OpenAI content part
            value = value["file"]
        known = {k: value[k] for k in ("file_data", "file_id", "filename") if value.get(k) is not None}
        unknown = sorted(set(value) - {"file_data", "file_id", "filename"})
        if unknown:
            raise ValueError(f"a file has file_data, file_id and filename, not {', '.join(map(str, unknown))}")
        if not ({"file_data", "file_id"} & set(known)):
            raise ValueError("a file needs file_data (a data: URL) or file_id (an uploaded file's id)")
        for k, v in known.items():
            if not isinstance(v, str):
                raise ValueError(f"a file's {k} must be text, not {type(v).__name__}")
        if "file_data" in known and _data_url_mime(known["file_data"]) is None:
            raise ValueError("a file's file_data must be a data: URL (data:<type>;base64,...); use "
                             "pl.File.from_file(path) or pl.File.from_bytes(data)")
        return known
    if isinstance(value, str):
        text = value.strip()
        parts = _dspy_parts(text)
        if parts is not None and len(parts) == 1 and parts[0].get("type") == "file":
            return _file_fields(parts[0])
        if _data_url_mime(text) is not None:
            return {"file_data": text}
        raise ValueError(f"{text[:200]!r} is not a data: URL; for a file on disk use pl.File.from_file(path)")
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {"file_data": _data_url(bytes(value), "application/octet-stream")}
    if isinstance(value, os.PathLike):
        return File.from_file(value).model_dump(exclude_none=True)
    raise ValueError(f"a file is a data: URL, bytes, a pathlib.Path or a dict, not a {type(value).__name__}")


class File(Type):
    """A document for the model (a PDF, say): ``file_data`` (a ``data:`` URL), or ``file_id`` (a file already
    uploaded to the provider), with an optional ``filename``.

    ``File.from_file(path)``, ``File.from_bytes(data, filename=..., mime_type=...)``, ``File.from_file_id(id)``.
    The OpenAI-compatible client sends it as a ``file`` content part.
    """

    file_data: str | None = None
    file_id: str | None = None
    filename: str | None = None

    def __init__(self, source: Any = _UNSET, /, **data: Any) -> None:
        if source is not _UNSET:
            try:
                fields = _file_fields(source)
            except ValueError as exc:
                raise ValueError(f"not a File: {exc}") from None
            overlap = sorted(set(fields) & set(data))
            if overlap:
                raise TypeError(f"File got {', '.join(overlap)} twice: in the source and as keywords")
            data = {**fields, **data}
        super().__init__(**data)

    @pydantic.model_validator(mode="before")
    @classmethod
    def _read(cls, data: Any) -> Any:
        return _file_fields(data)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str], filename: str | None = None,
                  mime_type: str | None = None) -> File:
        data = _read_file(path, "File.from_file")
        mime = mime_type or mimetypes.guess_type(str(path))[0] or "application/octet-stream"
        return cls(file_data=_data_url(data, mime), filename=filename or Path(path).name)

    from_path = from_file

    @classmethod
    def from_bytes(cls, data: bytes, filename: str | None = None,
                   mime_type: str = "application/octet-stream") -> File:
        return cls(file_data=_data_url(bytes(data), mime_type), filename=filename)

    @classmethod
    def from_file_id(cls, file_id: str, filename: str | None = None) -> File:
        return cls(file_id=file_id, filename=filename)

    def content_parts(self) -> list[dict[str, Any]]:
        return [{"type": "file", "file": self.model_dump(exclude_none=True)}]

    def prompt_text(self) -> str:
        name = f"{self.filename}, " if self.filename else ""
        if self.file_data:
            return f"<file: {name}{_data_url_mime(self.file_data)}, {_size(_data_url_bytes(self.file_data))}>"
        return f"<file: {name}id {self.file_id}>"

    def __repr__(self) -> str:
        return "File(" + self.prompt_text()[7:-1] + ")"

    __str__ = prompt_text


# -- code -------------------------------------------------------------------------------------------------

_FENCED = re.compile(r"```[^\n`]*\n(.*?)```", re.S)
_INLINE_FENCED = re.compile(r"```(.*?)```", re.S)


def _unfence(text: str) -> str:
    """The code inside the first markdown code block of ``text``, or ``text`` itself without one."""
    m = _FENCED.search(text) or _INLINE_FENCED.search(text)
    if m:
        return m.group(1).strip("\n").rstrip()
    return text.strip("\n").rstrip()


class Code(Type):
    """Source code, as an input to read or an output to write. ``Code["python"]`` names the language (the
    prompt asks for a fenced block in it); plain ``Code`` is Python. Read from a reply, the code is what is
    inside the first fenced block (the whole reply when there is none)."""

    __promptless_text__: ClassVar[bool] = True
    language: ClassVar[str] = "python"
    _by_language: ClassVar[dict[str, type[Code]]] = {}

    code: str

    @pydantic.model_validator(mode="before")
    @classmethod
    def _read(cls, data: Any) -> Any:
        if isinstance(data, Code):
            return {"code": data.code}
        if isinstance(data, str):
            return {"code": _unfence(data)}
        if isinstance(data, Mapping) and isinstance(data.get("code"), str) and set(data) <= {"code", "language"}:
            return {"code": _unfence(data["code"])}
        raise ValueError(f"code is text, not a {type(data).__name__}")

    @pydantic.model_serializer()
    def _dump(self) -> str:
        return self.code

    @classmethod
    def __get_pydantic_json_schema__(cls, core_schema: Any, handler: Any) -> dict[str, Any]:
        return {"type": "string", "description": f"{cls.language} code"}

    def __class_getitem__(cls, language: Any) -> Any:  # type: ignore[override]
        if not isinstance(language, str) or not language.strip():
            raise TypeError(f"Code[...] takes a language name, e.g. Code['python'], got {language!r}")
        key = language.strip()
        made = Code._by_language.get(key)
        if made is None:
            made = pydantic.create_model("Code_" + re.sub(r"\W", "_", key), __base__=Code)
            made.language = key
            Code._by_language[key] = made
        return made

    @classmethod
    def description(cls) -> str:
        return f"{cls.language} code in a markdown code block (```{cls.language.lower()} ... ```)"

    @classmethod
    def type_note(cls) -> str:
        return cls.description()

    @classmethod
    def from_reply(cls, text: str) -> Code:
        return cls(code=_unfence(text))

    def prompt_text(self) -> str:
        return f"```{self.language.lower()}\n{self.code}\n```"

    def __str__(self) -> str:
        return self.code


# -- reasoning ----------------------------------------------------------------------------------------------

class Reasoning(Type):
    """A model's reasoning, a piece of text that behaves like a ``str`` (``==``, ``in``, ``len``, ``+``, the
    string methods). As a field type it is written and read as text."""

    __promptless_text__: ClassVar[bool] = True

    content: str

    @pydantic.model_validator(mode="before")
    @classmethod
    def _read(cls, data: Any) -> Any:
        if isinstance(data, Reasoning):
            return {"content": data.content}
        if isinstance(data, str):
            return {"content": data}
        if isinstance(data, Mapping) and set(data) == {"content"} and isinstance(data["content"], str):
            return {"content": data["content"]}
        raise ValueError(f"reasoning is text, not a {type(data).__name__}")

    @pydantic.model_serializer()
    def _dump(self) -> str:
        return self.content

    @classmethod
    def __get_pydantic_json_schema__(cls, core_schema: Any, handler: Any) -> dict[str, Any]:
        return {"type": "string"}

    @classmethod
    def type_note(cls) -> str:
        return ""

    @classmethod
    def from_reply(cls, text: str) -> Reasoning:
        return cls(content=text.strip())

    def prompt_text(self) -> str:
        return self.content

    def __str__(self) -> str:
        return self.content

    def __repr__(self) -> str:
        return repr(self.content)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Reasoning):
            return self.content == other.content
        if isinstance(other, str):
            return self.content == other
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self.content)

    def __len__(self) -> int:
        return len(self.content)

    def __contains__(self, item: object) -> bool:
        return isinstance(item, str) and item in self.content

    def __getitem__(self, key: Any) -> str:
        return self.content[key]

    def __iter__(self) -> Iterator[str]:  # type: ignore[override]
        return iter(self.content)

    def __add__(self, other: Any) -> Any:
        if isinstance(other, Reasoning):
            return Reasoning(content=self.content + other.content)
        if isinstance(other, str):
            return self.content + other
        return NotImplemented

    def __radd__(self, other: Any) -> Any:
        if isinstance(other, str):
            return other + self.content
        return NotImplemented

    def __getattr__(self, name: str) -> Any:
        if not name.startswith("_") and hasattr(str, name):
            return getattr(self.content, name)
        return super().__getattr__(name)  # type: ignore[misc]


# -- documents and citations --------------------------------------------------------------------------------

class Document(Type):
    """A text (or PDF) the model may quote from: ``data``, an optional ``title`` and ``context``. Written into
    the prompt as a titled text block; ``Citations`` outputs point into it by ``document_index``."""

    data: str
    title: str | None = None
    media_type: str = "text/plain"
    context: str | None = None

    model_config = ConfigDict(frozen=True, extra="forbid")

    @pydantic.model_validator(mode="before")
    @classmethod
    def _read(cls, data: Any) -> Any:
        if isinstance(data, str):
            return {"data": data}
        return data

    def prompt_text(self) -> str:
        lines = [f"<document title={json.dumps(self.title)}>" if self.title else "<document>"]
        if self.context:
            lines.append(f"({self.context})")
        lines += [self.data, "</document>"]
        return "\n".join(lines)

    def __str__(self) -> str:
        title = f"{self.title!r}: " if self.title else ""
        return f"Document({title}{len(self.data)} chars)"


class Citations(Type):
    """Passages a reply rests on: a list of ``Citations.Citation`` (the quoted text, the index of the document
    it is from, and where in it). Iterates, indexes and has a length like the list it holds."""

    class Citation(Type):
        type: str = "char_location"
        cited_text: str
        document_index: int
        document_title: str | None = None
        start_char_index: int | None = None
        end_char_index: int | None = None
        supported_text: str | None = None

        def format(self) -> dict[str, Any]:
            return self.model_dump(exclude_none=True)

    citations: list[Citation]

    @pydantic.model_validator(mode="before")
    @classmethod
    def _read(cls, data: Any) -> Any:
        if isinstance(data, Citations):
            return {"citations": list(data.citations)}
        if isinstance(data, list):
            return {"citations": data}
        if isinstance(data, Mapping) and "cited_text" in data:
            return {"citations": [data]}
        return data

    @classmethod
    def from_dict_list(cls, citations: list[dict[str, Any]]) -> Citations:
        return cls(citations=[cls.Citation(**c) for c in citations])

    @classmethod
    def description(cls) -> str:
        return "the passages the answer rests on, each quoted exactly with the index of its document"

    def format(self) -> list[dict[str, Any]]:
        return [c.format() for c in self.citations]

    def __iter__(self) -> Iterator[Citations.Citation]:  # type: ignore[override]
        return iter(self.citations)

    def __len__(self) -> int:
        return len(self.citations)

    def __getitem__(self, index: int) -> Citations.Citation:
        return self.citations[index]


# -- tool calls -----------------------------------------------------------------------------------------------

def _call_fields(data: Any) -> dict[str, Any]:
    """A tool call in any of the shapes models and providers write it, as ``{"id", "name", "args"}``."""
    if isinstance(data, ToolCalls.ToolCall):
        return {"id": data.id, "name": data.name, "args": dict(data.args)}
    if not isinstance(data, Mapping):
        raise ValueError(f"a tool call is an object with name and args, not a {type(data).__name__}")
    if isinstance(data.get("function"), Mapping):  # OpenAI's shape: {"id", "type", "function": {name, arguments}}
        fn = data["function"]
        name, args = fn.get("name", data.get("name")), fn.get("arguments", {})
    else:
        name = data.get("name", data.get("tool_name"))
        args = data.get("args", data.get("arguments", data.get("tool_args", {})))
    if not isinstance(name, str) or not name.strip():
        raise ValueError("a tool call needs the tool's name")
    if isinstance(args, str):
        args = _json_object(args)
    if args is None:
        args = {}
    if not isinstance(args, Mapping):
        raise ValueError(f"the args of a call to {name!r} must be a JSON object, not {type(args).__name__}")
    call_id = data.get("id", data.get("call_id"))
    return {"id": call_id if isinstance(call_id, str) else None, "name": name.strip(), "args": dict(args)}


def _json_object(text: str) -> Any:
    stripped = text.strip()
    if not stripped:
        return {}
    try:
        return json.loads(stripped)
    except ValueError:
        pass
    try:
        import json_repair

        repaired = json_repair.loads(stripped)
    except Exception:
        repaired = None
    if not isinstance(repaired, dict):
        raise ValueError(f"tool call arguments {stripped[:200]!r} are not a JSON object")
    return repaired


def _find_function(name: str, functions: Any, caller: Any) -> Callable[..., Any] | None:
    if functions is None:
        # the caller's names, then those of the frames around it (a comprehension runs in a frame of its own)
        frame, depth = caller, 0
        while frame is not None and depth < 8:
            found = frame.f_locals.get(name, frame.f_globals.get(name))
            if callable(found):
                return found  # type: ignore[no-any-return]
            frame, depth = frame.f_back, depth + 1
        return None
    if isinstance(functions, Mapping):
        return functions.get(name)
    for fn in functions:
        if getattr(fn, "name", None) == name or getattr(fn, "__name__", None) == name:
            return fn  # type: ignore[no-any-return]
    return None


class ToolCalls(Type):
    """The tools a model chose to call: ``tool_calls``, a list of ``ToolCalls.ToolCall`` (``name`` and
    ``args``). As an output beside a ``list[pl.Tool]`` input it is filled from the server's native function
    calling where the LM has it, and read from the reply text elsewhere.

        for call in pred.tool_calls:
            print(call.name, call.args, call.execute(functions=tools))
        results = pred.tool_calls.execute(functions=tools)
    """

    class ToolCall(Type):
        name: str
        args: dict[str, Any] = pydantic.Field(default_factory=dict)
        id: str | None = None

        @pydantic.model_validator(mode="before")
        @classmethod
        def _read(cls, data: Any) -> Any:
            return _call_fields(data)

        @classmethod
        def __get_pydantic_json_schema__(cls, core_schema: Any, handler: Any) -> dict[str, Any]:
            return {"type": "object", "properties": {"name": {"type": "string"},
                                                     "args": {"type": "object", "additionalProperties": True}},
                    "required": ["name", "args"]}

        def format(self) -> dict[str, Any]:
            return {"name": self.name, "args": self.args}

        def execute(self, functions: Any = None) -> Any:
            """Call the tool: ``functions`` is a list of ``pl.Tool`` or functions, or a dict of name -> function;
            without it the name is looked up among the caller's local and global names, as DSPy does.
            A ``pl.Tool`` checks the arguments first (``ToolError`` when they do not fit)."""
            caller = inspect.currentframe().f_back if functions is None else None  # type: ignore[union-attr]
            try:
                fn = _find_function(self.name, functions, caller)
            finally:
                del caller
            if fn is None:
                raise ToolError(
                    f"no function named {self.name!r} to run this tool call; pass functions=[...] (pl.Tool objects or "
                    "functions) or functions={'name': fn}"
                )
            try:
                return fn(**self.args)
            except ToolError:
                raise
            except Exception as exc:
                raise ToolError(f"tool {self.name!r} raised {type(exc).__name__}: {exc}") from exc

    tool_calls: list[ToolCall] = pydantic.Field(default_factory=list)

    @pydantic.model_validator(mode="before")
    @classmethod
    def _read(cls, data: Any) -> Any:
        if isinstance(data, ToolCalls):
            return {"tool_calls": list(data.tool_calls)}
        if isinstance(data, list):
            return {"tool_calls": data}
        if isinstance(data, Mapping):
            if "tool_calls" in data:
                calls = data["tool_calls"]
                if not isinstance(calls, list):
                    raise ValueError("tool_calls must be a list of calls")
                return {"tool_calls": calls}
            return {"tool_calls": [data]}
        raise ValueError(
            'tool calls are a JSON object like {"tool_calls": [{"name": "search", "args": {"query": "..."}}]}'
        )

    @classmethod
    def __get_pydantic_json_schema__(cls, core_schema: Any, handler: Any) -> dict[str, Any]:
        call = cls.ToolCall.__get_pydantic_json_schema__(None, None)
        return {"type": "object", "properties": {"tool_calls": {"type": "array", "items": call}},
                "required": ["tool_calls"]}

    @classmethod
    def from_dict_list(cls, calls: list[dict[str, Any]]) -> ToolCalls:
        return cls.model_validate({"tool_calls": calls})

    @classmethod
    def description(cls) -> str:
        return ('a JSON object {"tool_calls": [...]}, each call {"name": <tool name>, "args": {<argument>: <value>}}; '
                'an empty list calls no tool')

    @classmethod
    def type_note(cls) -> str:
        return cls.description()

    def format(self) -> dict[str, Any]:
        return {"tool_calls": [c.format() for c in self.tool_calls]}

    def prompt_text(self) -> str:
        return json.dumps(self.format(), ensure_ascii=False)

    def execute(self, functions: Any = None) -> list[Any]:
        """Run every call in order (see ``ToolCall.execute``) and return their results."""
        caller = inspect.currentframe().f_back if functions is None else None  # type: ignore[union-attr]
        try:
            found = [(_find_function(c.name, functions, caller), c) for c in self.tool_calls]
        finally:
            del caller
        missing = [c.name for fn, c in found if fn is None]
        if missing:
            raise ToolError(f"no function named {', '.join(map(repr, missing))} to run; pass functions=[...]")
        return [c.execute(functions={c.name: fn}) for fn, c in found]

    def __iter__(self) -> Iterator[ToolCalls.ToolCall]:  # type: ignore[override]
        return iter(self.tool_calls)

    def __len__(self) -> int:
        return len(self.tool_calls)

    def __getitem__(self, index: int) -> ToolCalls.ToolCall:
        return self.tool_calls[index]


# -- what the adapters ask of a type -------------------------------------------------------------------------

def is_typed(annotation: Any) -> bool:
    """Whether ``annotation`` is one of these types (a ``Type`` subclass)."""
    return isinstance(annotation, type) and issubclass(annotation, Type)


def has_parts(value: Any) -> bool:
    """Whether ``value`` is a typed value sent as content parts (an image, audio, a file)."""
    return isinstance(value, Type) and value.content_parts() is not None


__all__ = [
    "PILLOW_HINT",
    "Audio",
    "Citations",
    "Code",
    "Document",
    "File",
    "Image",
    "Reasoning",
    "ToolCalls",
    "Type",
    "has_parts",
    "image_mime",
    "is_typed",
]
