"""Typed field values: what each type takes, how the adapters write it into messages, and how the OpenAI-compatible
client sends it (checked on the request body a real HTTP server on 127.0.0.1 receives)."""

from __future__ import annotations

import base64
import json
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import promptless as pl
from promptless import settings
from promptless.adapters.parts import render_input
from promptless.errors import ConfigurationError, ToolError, TypeMismatchWarning
from promptless.lm.cache import cache_key
from promptless.lm.openai import OpenAILM
from promptless.media import Audio, Citations, Code, Document, File, Image, Reasoning, ToolCalls
from promptless.types import LMRequest, Message

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 24
JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 24
GIF = b"GIF89a" + b"\x00" * 24
PythonCode = Code["python"]
WEBP = b"RIFF\x00\x00\x00\x00WEBPVP8 " + b"\x00" * 16


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


# -- a real HTTP server on 127.0.0.1 --------------------------------------------------------------------------


def chat(*texts: str) -> dict[str, Any]:
    return {"choices": [{"index": i, "message": {"role": "assistant", "content": t}, "finish_reason": "stop"}
                        for i, t in enumerate(texts)],
            "usage": {"prompt_tokens": 3, "completion_tokens": 2}}


@pytest.fixture
def stub(chat_server: Callable[..., Any]) -> Callable[..., Any]:
    """Chat servers on 127.0.0.1 (tests/conftest.py's ChatServer): ``stub(reply=None, files=None)``."""
    return chat_server


def served_lm(server: Any, **kw: Any) -> OpenAILM:
    kw.setdefault("cache", False)
    return OpenAILM("served", base_url=server.url + "/v1", api_key="", retry=False, **kw)


# -- Image ----------------------------------------------------------------------------------------------------


def test_image_from_urls_and_data_urls_keeps_them() -> None:
    assert Image(url="https://example.com/cat.png").url == "https://example.com/cat.png"
    assert Image("gs://bucket/cat.png").url == "gs://bucket/cat.png"
    data_url = "data:image/png;base64," + b64(PNG)
    image = Image(data_url)
    assert image.url == data_url and image.mime_type == "image/png"
    assert image.content_parts() == [{"type": "image_url", "image_url": {"url": data_url}}]


@pytest.mark.parametrize(("data", "mime"), [(PNG, "image/png"), (JPEG, "image/jpeg"), (GIF, "image/gif"),
                                            (WEBP, "image/webp")])
def test_image_bytes_become_a_data_url_of_their_format(data: bytes, mime: str) -> None:
    image = Image(data)
    assert image.url == f"data:{mime};base64,{b64(data)}"
    assert Image.from_bytes(data).url == image.url
    assert Image.from_bytes(b"anything", mime_type="image/avif").url.startswith("data:image/avif;base64,")


def test_image_refuses_a_file_name_given_as_text_and_unknown_bytes() -> None:
    # a string from anywhere (a model's reply, say) never makes promptless read a file
    with pytest.raises(ValueError, match=r"Image.from_file\(path\)"):
        Image("cat.png")
    with pytest.raises(ValueError, match=r"Image\.from_file"):
        Image.model_validate({"url": "/etc/passwd"})
    with pytest.raises(ValueError, match="cannot tell the image format"):
        Image(b"plain text, not an image")
    with pytest.raises(ValueError, match=r"not an? int"):
        Image(3)


def test_image_from_file_and_from_a_path_object(tmp_path: Path) -> None:
    path = tmp_path / "dot.png"
    path.write_bytes(PNG)
    assert Image.from_file(path).url == "data:image/png;base64," + b64(PNG)
    assert Image.from_path(str(path)) == Image.from_file(path)
    assert Image(path).url == Image.from_file(path).url  # a Path object is the caller's own choice of file
    other = tmp_path / "notes.txt"
    other.write_text("hello")
    with pytest.raises(ValueError, match="not an image file"):
        Image.from_file(other)
    with pytest.raises(ValueError, match="no file at"):
        Image.from_file(tmp_path / "missing.png")


def test_image_from_url_downloads_and_checks_the_type(stub: Callable[..., Any]) -> None:
    server = stub(files={"/cat.png": ("image/png", PNG), "/page": ("text/html", b"<html></html>"),
                         "/raw": ("application/octet-stream", JPEG)})
    assert Image.from_url(server.url + "/cat.png").url == "data:image/png;base64," + b64(PNG)
    assert Image.from_url(server.url + "/raw").url.startswith("data:image/jpeg;base64,")  # sniffed
    with pytest.raises(ValueError, match="is not an image"):
        Image.from_url(server.url + "/page")
    with pytest.raises(ValueError, match="HTTP 404"):
        Image.from_url(server.url + "/missing.png")
    assert Image.from_url(server.url + "/cat.png", download=False).url == server.url + "/cat.png"
    with pytest.raises(ValueError, match="http"):
        Image.from_url("file:///etc/passwd")


def test_image_repr_and_text_do_not_print_the_data() -> None:
    image = Image(PNG)
    assert b64(PNG) not in repr(image) and "image/png" in repr(image)
    assert image.prompt_text() == "<image: image/png, 32 bytes>"
    assert Image("https://example.com/a.png").prompt_text() == "<image: https://example.com/a.png>"


def test_image_dumps_to_json_and_reads_back_including_dspy_markers() -> None:
    image = Image(PNG)
    dumped = image.model_dump(mode="json")
    assert dumped == {"url": image.url} and json.loads(json.dumps(dumped)) == dumped
    assert Image.model_validate(dumped) == image
    dspy_form = ('<<CUSTOM-TYPE-START-IDENTIFIER>>[{"type": "image_url", "image_url": {"url": "https://x.org/a.png"}}]'
                 "<<CUSTOM-TYPE-END-IDENTIFIER>>")
    assert Image.model_validate(dspy_form).url == "https://x.org/a.png"


def test_from_pil_without_pillow_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "PIL", None)
    with pytest.raises(ConfigurationError, match=r"promptless\[images\]"):
        Image.from_PIL(object())


def test_from_pil_encodes_the_image() -> None:
    pil = pytest.importorskip("PIL.Image")
    img = pil.new("RGB", (2, 2), (255, 0, 0))
    image = Image.from_PIL(img)
    assert image.url.startswith("data:image/png;base64,")
    assert Image(img).url == image.url
    with pil.open(__import__("io").BytesIO(base64.b64decode(image.url.partition(",")[2]))) as back:
        assert back.size == (2, 2)


# -- Audio, File --------------------------------------------------------------------------------------------


def test_audio_forms() -> None:
    audio = Audio(b"RIFFxxxxWAVE", audio_format="audio/x-wav")
    assert audio.audio_format == "wav" and audio.data == b64(b"RIFFxxxxWAVE")
    assert audio.content_parts() == [{"type": "input_audio", "input_audio": {"data": audio.data, "format": "wav"}}]
    assert Audio("data:audio/mpeg;base64," + b64(b"ID3")).audio_format == "mp3"
    assert Audio(data=b64(b"x"), audio_format="wav") == Audio.from_bytes(b"x", "wav")
    assert Audio.model_validate(audio.model_dump(mode="json")) == audio
    with pytest.raises(ValueError, match="audio_format"):
        Audio(b"bytes without a format")
    with pytest.raises(ValueError, match="from_file"):
        Audio("speech.wav")


def test_audio_from_file(tmp_path: Path) -> None:
    path = tmp_path / "a.wav"
    path.write_bytes(b"RIFF0000WAVE")
    assert Audio.from_file(path).audio_format == "wav"
    odd = tmp_path / "a.sound"
    odd.write_bytes(b"x")
    with pytest.raises(ValueError, match="audio_format="):
        Audio.from_file(odd)
    assert Audio.from_file(odd, audio_format="mp3").audio_format == "mp3"


def test_file_forms(tmp_path: Path) -> None:
    pdf = tmp_path / "report.pdf"
    pdf.write_bytes(b"%PDF-1.4 ...")
    f = File.from_file(pdf)
    assert f.filename == "report.pdf" and f.file_data == "data:application/pdf;base64," + b64(b"%PDF-1.4 ...")
    assert f.content_parts() == [{"type": "file", "file": {"file_data": f.file_data, "filename": "report.pdf"}}]
    assert File.from_file_id("file-123").content_parts() == [{"type": "file", "file": {"file_id": "file-123"}}]
    assert File.from_bytes(b"abc", filename="a.bin").file_data == "data:application/octet-stream;base64," + b64(b"abc")
    assert File.model_validate(f.model_dump(mode="json")) == f
    with pytest.raises(ValueError, match=r"file_data .* or file_id"):
        File(filename="only-a-name.pdf")


# -- Code, Reasoning, Citations, Document --------------------------------------------------------------------


def test_code_takes_a_language_and_reads_fenced_blocks() -> None:
    assert Code["python"] is Code["python"] and Code["js"].language == "js" and Code.language == "python"
    code = Code["js"]("```javascript\nconsole.log(1)\n```")
    assert code.code == "console.log(1)" and str(code) == "console.log(1)"
    assert code.prompt_text() == "```js\nconsole.log(1)\n```"
    assert Code["js"].from_reply("Here it is:\n```js\nlet x = 2\n```\nDone.").code == "let x = 2"
    assert Code.from_reply("x = 1").code == "x = 1"
    assert code.model_dump(mode="json") == "console.log(1)"  # saved as its text
    assert Code["js"].model_json_schema()["type"] == "string"
    with pytest.raises(TypeError, match="language"):
        Code[3]


def test_reasoning_behaves_like_text() -> None:
    r = Reasoning("First, add.")
    assert r == "First, add." and r == Reasoning(content="First, add.") and str(r) == "First, add."
    assert "add" in r and len(r) == 11 and r.lower() == "first, add." and r + "!" == "First, add.!"
    assert r.model_dump(mode="json") == "First, add."


def test_citations_and_documents() -> None:
    cites = Citations.model_validate([{"cited_text": "Water boils at 100 C", "document_index": 0}])
    assert len(cites) == 1 and cites[0].cited_text == "Water boils at 100 C"
    assert [c.document_index for c in cites] == [0]
    assert Citations.from_dict_list([{"cited_text": "a", "document_index": 1}]).citations[0].document_index == 1
    doc = Document(data="Water boils at 100 C.", title="Physics")
    assert doc.prompt_text() == '<document title="Physics">\nWater boils at 100 C.\n</document>'


# -- rendering into messages ----------------------------------------------------------------------------------


class Describe(pl.Signature):
    """Describe the picture."""

    photo: Image = pl.InputField()
    question: str = pl.InputField()
    caption: str = pl.OutputField()


def caption_reply(text: str = "A cat.") -> str:
    return f"[[ ## caption ## ]]\n{text}\n[[ ## completed ## ]]"


def test_an_image_input_becomes_a_content_part_where_its_value_goes() -> None:
    lm = pl.ScriptedLM([caption_reply()])
    pred = pl.Predict(Describe, lm=lm)(photo=Image(PNG), question="What is it?")
    assert pred.caption == "A cat."
    system, user = lm.requests[0].messages
    assert system.parts is None and "photo (Image)" in system.content
    assert user.parts is not None
    kinds = [p["type"] for p in user.parts]
    assert kinds == ["text", "image_url", "text"]
    assert user.parts[0]["text"] == "[[ ## photo ## ]]\n"
    assert user.parts[1]["image_url"]["url"] == "data:image/png;base64," + b64(PNG)
    assert user.parts[2]["text"].startswith("\n\n[[ ## question ## ]]\nWhat is it?")
    # the text of the message reads the placeholder, for logs and text-only readers
    assert "<image: image/png, 32 bytes>" in user.content and b64(PNG) not in user.content
    assert user.to_dict()["content"] == list(user.parts)


def test_a_url_string_for_an_image_field_is_read_as_an_image() -> None:
    lm = pl.ScriptedLM([caption_reply()])
    pl.Predict(Describe, lm=lm)(photo="https://example.com/cat.png", question="q")
    assert lm.requests[0].messages[-1].media == [
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}]


def test_an_image_field_refuses_what_is_not_an_image_before_any_call() -> None:
    lm = pl.ScriptedLM([caption_reply()])
    with pytest.raises(ConfigurationError, match=r"input 'photo' is typed Image.*from_file"):
        pl.Predict(Describe, lm=lm)(photo="cat.png", question="q")
    assert lm.requests == []


def test_a_list_of_images_gives_one_part_each_in_order() -> None:
    sig = pl.Signature({"photos": (list[Image], pl.InputField()), "caption": (str, pl.OutputField())})
    lm = pl.ScriptedLM([caption_reply()])
    pl.Predict(sig, lm=lm)(photos=[Image("https://a.org/1.png"), Image("https://a.org/2.png")])
    urls = [p["image_url"]["url"] for p in lm.requests[0].messages[-1].media]
    assert urls == ["https://a.org/1.png", "https://a.org/2.png"]


def test_demos_with_images_are_user_turns_with_parts_and_assistant_turns_stay_text() -> None:
    lm = pl.ScriptedLM([caption_reply()])
    predict = pl.Predict(Describe, lm=lm)
    # a demo as a saved program holds it: the image as plain JSON data
    predict.demos = [pl.Example(photo={"url": "https://a.org/dog.png"}, question="q", caption="A dog.")]
    predict(photo=Image("https://a.org/cat.png"), question="q")
    messages = lm.requests[0].messages
    assert [m.role for m in messages] == ["system", "user", "assistant", "user"]
    assert messages[1].media == [{"type": "image_url", "image_url": {"url": "https://a.org/dog.png"}}]
    assert messages[2].parts is None and "A dog." in messages[2].content
    assert messages[3].media[0]["image_url"]["url"] == "https://a.org/cat.png"


def test_the_json_adapter_sends_parts_too() -> None:
    lm = pl.ScriptedLM(['{"caption": "A cat."}'])
    pred = pl.Predict(Describe, lm=lm, adapter=pl.JSONAdapter())(photo=Image(PNG), question="q")
    assert pred.caption == "A cat."
    user = lm.requests[0].messages[-1]
    assert [p["type"] for p in user.parts] == ["text", "image_url", "text"]
    assert user.parts[0]["text"] == "photo: "


def test_audio_and_file_inputs_and_their_placeholders() -> None:
    sig = pl.Signature({"clip": (Audio, pl.InputField()), "doc": (File, pl.InputField()),
                        "summary": (str, pl.OutputField())})
    lm = pl.ScriptedLM(["[[ ## summary ## ]]\nok\n[[ ## completed ## ]]"])
    pl.Predict(sig, lm=lm)(clip=Audio(b"RIFF", audio_format="wav"), doc=File.from_file_id("file-9", filename="a.pdf"))
    user = lm.requests[0].messages[-1]
    assert [p["type"] for p in user.media] == ["input_audio", "file"]
    assert "<audio: wav, 4 bytes>" in user.content and "<file: a.pdf, id file-9>" in user.content


def test_text_typed_inputs_are_written_as_text() -> None:
    assert render_input("x = 1", Code["python"]) == "```python\nx = 1\n```"
    assert render_input(ToolCalls(tool_calls=[{"name": "f", "args": {"a": 1}}]), ToolCalls) == (
        '{"tool_calls": [{"name": "f", "args": {"a": 1}}]}')
    assert render_input([Document("a"), Document("b")]) == "<document>\na\n</document>\n\n<document>\nb\n</document>"
    # outside an adapter's format, a media value reads as its placeholder
    assert render_input(Image("https://a.org/x.png")) == "<image: https://a.org/x.png>"
    assert pl.Prediction(photo=Image("https://a.org/x.png")).photo.prompt_text() == "<image: https://a.org/x.png>"


def test_the_cache_key_tells_two_images_apart() -> None:
    def request(url: str) -> LMRequest:
        return LMRequest(messages=[Message("user", "<image>", ({"type": "image_url", "image_url": {"url": url}},))])

    assert cache_key("m", request("https://a.org/1.png")) != cache_key("m", request("https://a.org/2.png"))
    assert cache_key("m", LMRequest(messages=[Message("user", "hi")])) == cache_key(
        "m", LMRequest(messages=[Message("user", "hi")]))


def test_messages_given_with_content_parts_keep_them() -> None:
    lm = pl.ScriptedLM(["fine"])
    parts = [{"type": "text", "text": "What is this? "},
             {"type": "image_url", "image_url": {"url": "https://a.org/x.png"}}]
    assert lm(messages=[{"role": "user", "content": parts}]) == ["fine"]
    message = lm.requests[0].messages[0]
    assert message.parts == tuple(parts) and message.content == "What is this? <image_url>"


# -- over the wire ----------------------------------------------------------------------------------------


def test_the_openai_client_sends_content_parts(stub: Callable[..., Any]) -> None:
    server = stub(lambda body: (200, chat(caption_reply("A red dot."))))
    sig = pl.Signature({"photo": (Image, pl.InputField()), "clip": (Audio, pl.InputField()),
                        "doc": (File, pl.InputField()), "caption": (str, pl.OutputField())})
    pdf = File.from_bytes(b"%PDF", filename="r.pdf", mime_type="application/pdf")
    pred = pl.Predict(sig, lm=served_lm(server))(photo=Image(PNG), clip=Audio(b"ID3", audio_format="mp3"), doc=pdf)
    assert pred.caption == "A red dot."
    (body,) = server.bodies
    system, user = body["messages"]
    assert isinstance(system["content"], str)
    content = user["content"]
    assert [p["type"] for p in content] == ["text", "image_url", "text", "input_audio", "text", "file", "text"]
    assert content[1] == {"type": "image_url", "image_url": {"url": "data:image/png;base64," + b64(PNG)}}
    assert content[3] == {"type": "input_audio", "input_audio": {"data": b64(b"ID3"), "format": "mp3"}}
    assert content[5] == {"type": "file", "file": {"file_data": "data:application/pdf;base64," + b64(b"%PDF"),
                                                   "filename": "r.pdf"}}
    assert content[0]["text"] == "[[ ## photo ## ]]\n" and content[2]["text"] == "\n\n[[ ## clip ## ]]\n"


def test_the_embedded_model_refuses_media_naming_a_backend_that_takes_it() -> None:
    from promptless.lm.local import LocalLM

    lm = object.__new__(LocalLM)  # no weights needed: the refusal comes before anything is loaded
    lm.model = "qwen2.5-coder-1.5b"
    request = LMRequest(messages=[Message("user", "<image>", ({"type": "image_url", "image_url": {"url": "x"}},))])
    with pytest.raises(ConfigurationError, match=r"cannot take an image \(pl.Image\).*pl.LM\('openai/"):
        lm.complete(request)
    with pytest.raises(ConfigurationError, match="no native tool calling"):
        lm.complete(LMRequest(messages=[Message("user", "hi")], tools=[{"type": "function", "function": {}}]))


def test_litellm_passes_parts_and_tools_and_reads_tool_calls() -> None:
    from promptless.lm.litellm import LiteLLMLM

    lm = LiteLLMLM("anthropic/claude", retry=False)
    parts = ({"type": "text", "text": "hi "}, {"type": "image_url", "image_url": {"url": "https://a.org/x.png"}})
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {}}}}]
    args = lm._arguments(LMRequest(messages=[Message("user", "hi <image>", parts)], tools=tools, tool_choice="auto"))
    assert args["messages"] == [{"role": "user", "content": list(parts)}]
    assert args["tools"] == tools and args["tool_choice"] == "auto"

    class NoCost:
        @staticmethod
        def completion_cost(**kw: Any) -> None:
            return None

    reply = {"choices": [{"message": {"content": None, "tool_calls": [
        {"id": "c1", "function": {"name": "f", "arguments": '{"x": 1}'}}]}, "finish_reason": "tool_calls"}]}
    resp = lm._to_response(reply, NoCost)
    assert resp.texts == [""] and resp.tool_calls == [[{"id": "c1", "name": "f", "args": {"x": 1}}]]


# -- saved programs stay JSON ---------------------------------------------------------------------------------


def test_a_program_with_media_and_code_in_its_demos_saves_as_json_and_loads(tmp_path: Path) -> None:
    class Fix(pl.Signature):
        screenshot: Image = pl.InputField()
        patch: PythonCode = pl.OutputField()

    program = pl.Predict(Fix)
    program.demos = [pl.Example(screenshot=Image(PNG), patch=Code["python"]("x = 1")).with_inputs("screenshot")]
    path = program.save(tmp_path / "fix.json")
    saved = json.loads(Path(path).read_text())
    (demo,) = saved["predictors"]["self"]["demos"]
    assert demo == {"screenshot": {"url": "data:image/png;base64," + b64(PNG)}, "patch": "x = 1"}

    loaded = pl.Predict(Fix)
    loaded.load(path)
    lm = pl.ScriptedLM(["[[ ## patch ## ]]\n```python\ny = 2\n```\n[[ ## completed ## ]]"])
    pred = loaded(screenshot=Image("https://a.org/now.png"), lm=lm)
    assert pred.patch.code == "y = 2"
    demo_user, demo_assistant = lm.requests[0].messages[1:3]
    assert demo_user.media == [{"type": "image_url", "image_url": {"url": "data:image/png;base64," + b64(PNG)}}]
    assert "```python\nx = 1\n```" in demo_assistant.content


# -- signature strings name the typed values ---------------------------------------------------------------


def test_signature_strings_know_the_typed_values_by_name() -> None:
    sig = pl.Signature("photo: Image, clip: dspy.Audio, source: pl.Code['rust'] -> answer, calls: ToolCalls")
    assert sig.input_fields["photo"].annotation is Image
    assert sig.input_fields["clip"].annotation is Audio
    assert sig.input_fields["source"].annotation is Code["rust"]
    assert sig.output_fields["calls"].annotation is ToolCalls
    with pytest.raises(pl.SignatureError, match="language name"):
        pl.Signature("source: Code[int] -> answer")
    with pytest.raises(pl.SignatureError, match=r"unknown type name 'other\.Image'"):
        pl.Signature("photo: other.Image -> answer")


def test_typed_outputs_are_read_from_replies() -> None:
    sig = pl.Signature("task -> code: Code['python'], why: Reasoning, cites: Citations")
    lm = pl.ScriptedLM(["[[ ## code ## ]]\n```python\nprint(1)\n```\n[[ ## why ## ]]\nIt prints.\n"
                        '[[ ## cites ## ]]\n[{"cited_text": "print", "document_index": 0}]\n[[ ## completed ## ]]'])
    pred = pl.Predict(sig, lm=lm)(task="t")
    assert pred.code.code == "print(1)" and pred.why == "It prints." and pred.cites[0].cited_text == "print"
    system = lm.requests[0].messages[0].content
    assert "<code: python code in a markdown code block (```python ... ```)>" in system
    assert "<why>" in system  # reasoning is text: no note


def test_a_fence_inside_a_json_string_is_text() -> None:
    sig = pl.Signature("task -> code: Code['python']")
    lm = pl.ScriptedLM(['{"code": "```python\\nx = 2\\n```"}'])
    assert pl.Predict(sig, lm=lm, adapter=pl.JSONAdapter())(task="t").code.code == "x = 2"


# -- type-mismatch warnings ----------------------------------------------------------------------------------


def run_quietly_checking(sig: Any, **inputs: Any) -> list[str]:
    lm = pl.ScriptedLM([lambda_reply(sig)])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pl.Predict(sig, lm=lm)(**inputs)
    return [str(w.message) for w in caught if issubclass(w.category, TypeMismatchWarning)]


def lambda_reply(sig: Any) -> str:
    return "\n".join(f"[[ ## {n} ## ]]\nx" for n in sig.output_fields) + "\n[[ ## completed ## ]]"


def test_inputs_of_the_wrong_type_give_a_warning_naming_field_and_types() -> None:
    sig = pl.Signature("question: str, n: int, ratio: float, tags: list[str], kind: Literal['a', 'b'] -> answer")
    found = run_quietly_checking(sig, question=3, n=2.5, ratio=1, tags=["x", 1], kind="c")
    assert len(found) == 4
    assert found[0].startswith("Predict: input 'question' of StringSignature is declared str but was given 3 (int)")
    assert "warn_on_type_mismatch=False" in found[0]
    assert any("'n'" in f and "declared int" in f for f in found)
    assert any("'tags'" in f and "list[str]" in f for f in found)
    assert any("'kind'" in f and "Literal['a', 'b']" in f for f in found)
    assert not any("'ratio'" in f for f in found)  # an int reads fine as a float


def test_inputs_of_the_right_type_give_no_warning() -> None:
    from enum import Enum

    from pydantic import BaseModel

    class Color(Enum):
        RED = "red"

    class Point(BaseModel):
        x: int

    sig = pl.Signature({
        "question": (str, pl.InputField()), "items": (list[str], pl.InputField()),
        "color": (Color, pl.InputField()), "point": (Point, pl.InputField()),
        "maybe": (int | None, pl.InputField()), "pair": (tuple[int, str], pl.InputField()),
        "table": (dict[str, list[int]], pl.InputField()), "photo": (Image, pl.InputField()),
        "answer": (str, pl.OutputField())})
    assert run_quietly_checking(sig, question="q", items=["a"], color="RED", point={"x": 1}, maybe=None,
                                pair=(1, "a"), table={"a": [1, 2]}, photo="https://a.org/x.png") == []
    assert run_quietly_checking(sig, question=["several", "texts"], items=["a"], color=Color.RED, point=Point(x=1),
                                maybe=3, pair=(1, "a"), table={}, photo=Image(PNG)) == []


def test_the_setting_turns_the_warnings_off(monkeypatch: pytest.MonkeyPatch) -> None:
    sig = pl.Signature("question: str, n: int -> answer")
    assert len(run_quietly_checking(sig, question=1, n="two")) == 2
    monkeypatch.setitem(settings._defaults, "warn_on_type_mismatch", False)
    assert run_quietly_checking(sig, question=1, n="two") == []


def test_the_warning_points_at_the_callers_line() -> None:
    lm = pl.ScriptedLM(["[[ ## answer ## ]]\nx\n[[ ## completed ## ]]"])
    predict = pl.Predict("n: int -> answer", lm=lm)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        predict(n="three")
    (w,) = [w for w in caught if issubclass(w.category, TypeMismatchWarning)]
    assert w.filename == __file__


# -- tools as DSPy writes them -------------------------------------------------------------------------------


def test_tool_takes_dspys_keywords_and_gives_the_function_schema() -> None:
    def search(query: str, k: int = 3) -> list[str]:
        """Search the web."""
        return [query] * k

    tool = pl.Tool(func=search, arg_desc={"query": "what to look for"})
    assert tool.func is search and not tool.has_kwargs
    assert tool.format_as_litellm_function_call() == {
        "type": "function",
        "function": {"name": "search", "description": "Search the web.", "parameters": {
            "type": "object", "required": ["query"],
            "properties": {"query": {"type": "string", "description": "what to look for"},
                           "k": {"type": "integer", "default": 3}}}}}

    def remote(**kwargs: Any) -> str:
        return json.dumps(kwargs, sort_keys=True)

    proxy = pl.Tool(remote, name="lookup", desc="Look up a record.",
                    args={"id": {"type": "integer"}, "verbose": {"type": "boolean", "default": False}})
    assert proxy.args == {"id": {"type": "integer"}, "verbose": {"type": "boolean", "default": False}}
    assert proxy.required == ["id"] and proxy.has_kwargs
    assert proxy(id="7") == '{"id": 7, "verbose": false}'  # "7" read as the integer the schema says
    with pytest.raises(ToolError, match="id"):
        proxy(verbose=True)
    with pytest.raises(ToolError, match="once"):
        pl.Tool(search, func=search)
