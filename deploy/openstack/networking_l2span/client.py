# Copyright l2span authors. Licensed under the Apache License 2.0.
"""A small client for the l2span brain's REST API (docs/openapi.yaml).

Standard library only (urllib + ssl), so the driver needs nothing that
Neutron does not ship. Several brain URLs may be given (brains sharing one
PostgreSQL): a request that cannot reach one tries the next.
"""

import json
import socket
import ssl
import urllib.error
import urllib.parse
import urllib.request


class BrainError(Exception):
    """The brain answered with an error (4xx or 5xx)."""

    def __init__(self, status, code, message, field=None):
        self.status = status
        self.code = code
        self.brain_message = message
        self.field = field
        super().__init__("brain: %s %s: %s" % (status, code, message))

    @property
    def user_error(self):
        """A 4xx other than auth: the request itself is wrong."""
        return 400 <= self.status < 500 and self.status not in (401, 403, 408, 429)

    @property
    def not_found(self):
        return self.status == 404


class BrainUnavailable(Exception):
    """No brain could be reached, or it answered 5xx/401/429: retry later."""


class BrainClient(object):

    def __init__(self, urls, token=None, ca_file=None, timeout=10.0,
                 insecure=False):
        if isinstance(urls, str):
            urls = [urls]
        self.urls = [u.rstrip('/') for u in urls if u]
        if not self.urls:
            raise ValueError("no brain URL configured ([l2span] brain_url)")
        self.token = token
        self.timeout = timeout
        ctx = None
        if any(u.startswith('https:') for u in self.urls):
            ctx = ssl.create_default_context(cafile=ca_file or None)
            if insecure:
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
        handlers = [urllib.request.ProxyHandler({})]  # never via a proxy
        if ctx is not None:
            handlers.append(urllib.request.HTTPSHandler(context=ctx))
        self._opener = urllib.request.build_opener(*handlers)
        self._first = 0  # the URL that answered last

    def request(self, method, path, body=None, query=None, timeout=None):
        """Send one request; returns the decoded JSON body (or None).

        Raises BrainError for a 4xx answer, BrainUnavailable when no brain
        answered usefully (network error, timeout, 5xx, 401).
        """
        if query:
            path = path + '?' + urllib.parse.urlencode(query)
        data = None
        headers = {'Accept': 'application/json'}
        if body is not None:
            data = json.dumps(body).encode()
            headers['Content-Type'] = 'application/json'
        if self.token:
            headers['Authorization'] = 'Bearer ' + self.token
        last = None
        n = len(self.urls)
        for i in range(n):
            idx = (self._first + i) % n
            req = urllib.request.Request(self.urls[idx] + path, data=data,
                                         headers=headers, method=method)
            try:
                with self._opener.open(
                        req, timeout=timeout or self.timeout) as resp:
                    raw = resp.read()
                self._first = idx
                return json.loads(raw) if raw else None
            except urllib.error.HTTPError as e:
                err = _brain_error(e)
                if err.status >= 500 or err.status in (401, 403, 429):
                    last = err
                    continue
                self._first = idx
                raise err
            except (urllib.error.URLError, socket.timeout, OSError,
                    ValueError) as e:
                last = e
                continue
        raise BrainUnavailable("no l2span brain answered %s %s: %s"
                               % (method, path, last))

    # ---- typed helpers ----

    def list_all(self, path, **query):
        """Every item of a paged list."""
        items = []
        query = dict(query, limit=1000)
        while True:
            page = self.request('GET', path, query=query) or {}
            items.extend(page.get('items') or [])
            nxt = page.get('next')
            if not nxt:
                return items
            query['marker'] = nxt

    def list_pods(self):
        return self.list_all('/v1/pods')

    def find_network(self, neutron_id, timeout=None):
        """The brain network of a Neutron network: the one with its id, or
        (made by an older driver) the one named after its id."""
        try:
            return self.request('GET', '/v1/networks/' + neutron_id,
                                timeout=timeout)
        except BrainError as e:
            if not e.not_found:
                raise
        page = self.request('GET', '/v1/networks',
                            query={'name': neutron_id, 'limit': 2},
                            timeout=timeout) or {}
        items = page.get('items') or []
        return items[0] if items else None


def _brain_error(e):
    status = e.code
    code, message, field = str(status), e.reason, None
    try:
        body = json.loads(e.read() or b'{}')
        detail = body.get('error') or {}
        code = detail.get('code') or code
        message = detail.get('message') or message
        field = detail.get('field')
    except (ValueError, AttributeError, OSError):
        pass
    return BrainError(status, code, message, field)
