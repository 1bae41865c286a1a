"""The registry's HTTP API, for clean: a tag's digest, deleting a manifest."""
import io
import urllib.error

import pytest

from pystributed import registry
from pystributed.errors import StepError


def test_registry_urls():
    assert registry.split("127.0.0.1:5000/team/proj:abc") == ("127.0.0.1:5000", "team/proj", "abc")
    assert registry._url("127.0.0.1:5000", "x") == "http://127.0.0.1:5000/v2/x"
    assert registry._url("localhost:5000", "x") == "http://localhost:5000/v2/x"
    assert registry._url("[::1]:5000", "x") == "http://[::1]:5000/v2/x"
    assert registry._url("registry.example.com", "x") == "https://registry.example.com/v2/x"


class Response:
    def __init__(self, status, headers):
        self.status, self.headers = status, headers

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


@pytest.fixture
def requests(monkeypatch):
    seen, answers = [], []

    def urlopen(request, timeout):
        seen.append((request.get_method(), request.full_url, request.headers.get("Accept")))
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    monkeypatch.setattr(registry.urllib.request, "urlopen", urlopen)
    return seen, answers


def http_error(code):
    return urllib.error.HTTPError("u", code, "Reason", {"Docker-Content-Digest": "x"}, io.BytesIO())


def test_a_tags_digest_and_its_deletion(requests):
    seen, answers = requests
    answers += [Response(200, {"Docker-Content-Digest": "sha256:1"}), http_error(404), Response(202, {})]
    assert registry.digest("localhost:5000/team/proj:abc") == "sha256:1"
    assert registry.digest("localhost:5000/team/proj:gone") is None
    registry.delete("localhost:5000/team/proj:abc", "sha256:1")
    assert [(method, url) for method, url, _ in seen] == [
        ("HEAD", "http://localhost:5000/v2/team/proj/manifests/abc"),
        ("HEAD", "http://localhost:5000/v2/team/proj/manifests/gone"),
        ("DELETE", "http://localhost:5000/v2/team/proj/manifests/sha256:1")]
    assert seen[0][2] == registry.MANIFEST_TYPES


@pytest.mark.parametrize(("error", "hint"), [
    (http_error(401), ("The registry asks for a login, which clean does not send: delete the tags with the "
                       "registry's own tools.")),
    (http_error(405), ("The registry does not allow deletes: set `storage: delete: enabled: true` in its "
                       "configuration.")),
    (http_error(500), ""),
    (urllib.error.URLError("refused"), "Is the registry reg:5000 up and reachable from here?"),
])
def test_a_registry_that_refuses_fails_the_clean_step(requests, error, hint):
    requests[1].append(error)
    with pytest.raises(StepError) as excinfo:
        registry.delete("reg:5000/proj:1", "sha256:1")
    assert excinfo.value.step == "clean" and excinfo.value.hint == hint
    assert excinfo.value.message.startswith("DELETE https://reg:5000/v2/proj/manifests/sha256:1: ")
