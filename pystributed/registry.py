"""The registry's HTTP API, for `clean`: find the digest a tag we pushed points to, and delete
that manifest (the registry must allow deletes: `storage: delete: enabled: true`). Its blobs
go at the registry's next garbage collection."""
import ipaddress
import urllib.error
import urllib.request

from pystributed.errors import StepError

# What `docker push` uploads: a manifest, or an index of them (multi-platform or with attestations).
MANIFEST_TYPES = ("application/vnd.docker.distribution.manifest.v2+json, "
                  "application/vnd.docker.distribution.manifest.list.v2+json, "
                  "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json")


def split(ref):
    """'host:5000/team/name:tag' -> ('host:5000', 'team/name', 'tag')."""
    repository, _, tag = ref.rpartition(":")
    host, _, name = repository.partition("/")
    return host, name, tag


def _url(host, path):
    # Docker speaks plain HTTP only to a registry on the loopback (or one listed as insecure).
    name = host.rsplit(":", 1)[0].strip("[]")
    try:
        loopback = name == "localhost" or ipaddress.ip_address(name).is_loopback
    except ValueError:
        loopback = False
    return f"{'http' if loopback else 'https'}://{host}/v2/{path}"


def _request(method, host, path):
    request = urllib.request.Request(_url(host, path), method=method, headers={"Accept": MANIFEST_TYPES})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.headers
    except urllib.error.HTTPError as e:
        if e.code == 404:
            return 404, e.headers
        hint = {
            401: "The registry asks for a login, which clean does not send: delete the tags with the "
                 "registry's own tools.",
            405: "The registry does not allow deletes: set `storage: delete: enabled: true` in its "
                 "configuration.",
        }.get(e.code, "")
        raise StepError("clean", f"{method} {request.full_url}: HTTP {e.code} {e.reason}",
                        hint=hint) from None
    except OSError as e:
        raise StepError("clean", f"{method} {request.full_url}: {e}",
                        hint=f"Is the registry {host} up and reachable from here?") from None


def digest(ref):
    """The digest `ref` points to in its registry, or None if the registry does not have it."""
    host, name, tag = split(ref)
    status, headers = _request("HEAD", host, f"{name}/manifests/{tag}")
    return headers.get("Docker-Content-Digest") if status == 200 else None


def has(ref):
    """Whether the registry has the tag `ref`: True, False, or None when it cannot say (it wants a
    login, or cannot be reached from here)."""
    try:
        return digest(ref) is not None
    except StepError:
        return None


def delete(ref, manifest_digest):
    """Delete the manifest `ref`'s tag points to (and so the tag)."""
    host, name, _ = split(ref)
    _request("DELETE", host, f"{name}/manifests/{manifest_digest}")
