"""Block outbound network in every Python process the tests start (notebook kernels too).

The test suite puts this folder on PYTHONPATH and sets FER_BLOCK_NETWORK=1, so
Python imports this module at start-up. Connections to loopback and Unix
sockets still work (Jupyter kernels talk over loopback ZMQ); anything else
raises ``OSError`` with a message that says a download was attempted.
"""
import os

if os.environ.get("FER_BLOCK_NETWORK") == "1":
    import ipaddress
    import socket

    _connect = socket.socket.connect
    _connect_ex = socket.socket.connect_ex
    _getaddrinfo = socket.getaddrinfo
    _LOCAL_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost", ""}

    def _is_local(host) -> bool:
        if host is None:
            return True
        host = host.decode() if isinstance(host, bytes) else str(host)
        if host in _LOCAL_NAMES:
            return True
        try:
            return ipaddress.ip_address(host.split("%")[0]).is_loopback or host in ("0.0.0.0", "::")
        except ValueError:
            return False

    def _refuse(address) -> None:
        raise OSError(
            f"network access blocked during tests: attempted connection to {address!r}. "
            "The course must not download anything at run time (see data/README.md)."
        )

    def _guarded_connect(self, address):
        if self.family in (socket.AF_INET, socket.AF_INET6) and not _is_local(address[0]):
            _refuse(address)
        return _connect(self, address)

    def _guarded_connect_ex(self, address):
        if self.family in (socket.AF_INET, socket.AF_INET6) and not _is_local(address[0]):
            _refuse(address)
        return _connect_ex(self, address)

    def _guarded_getaddrinfo(host, *args, **kwargs):
        if not _is_local(host):
            _refuse(host)
        return _getaddrinfo(host, *args, **kwargs)

    socket.socket.connect = _guarded_connect
    socket.socket.connect_ex = _guarded_connect_ex
    socket.getaddrinfo = _guarded_getaddrinfo
