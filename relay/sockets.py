"""Who listens on a TCP port of this machine, as Linux tells every user.

``/proc/net/tcp`` and ``/proc/net/tcp6`` list each socket of this network namespace with its
addresses, state, owner (uid) and inode, readable by anyone. A loopback port is ours only
while our process listens there: after a crash, any local user can take it. So a client
looks here before it sends a token to a port.

Standard library only: the kernel hook imports this module.
"""

from __future__ import annotations

import ipaddress
import sys
from dataclasses import dataclass
from pathlib import Path

TABLES = (Path("/proc/net/tcp"), Path("/proc/net/tcp6"))
LISTEN = "0A"  # the state column of a listening socket

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class Listener:
    uid: int  # who created the socket
    inode: int  # as ``socket:[inode]`` among the descriptors in /proc/<pid>/fd of its holders


def _address(field: str) -> tuple[IPAddress, int]:
    """``0100007F:1F90`` as (127.0.0.1, 8080): the kernel prints the address as 32-bit words
    in its own byte order."""
    words, port = field.split(":")
    raw = bytes.fromhex(words)
    if sys.byteorder == "little":
        raw = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    return _plain(ipaddress.ip_address(raw)), int(port, 16)


def _plain(address: IPAddress) -> IPAddress:
    """An IPv4 address mapped into IPv6 (a dual-stack socket's view of it) as IPv4."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return address.ipv4_mapped
    return address


def listeners(host: str, port: int) -> list[Listener]:
    """The sockets listening on ``port`` that a connection to ``host`` (an IP address) may
    reach: bound to that address or to all addresses.

    An IPv4 address is looked up in the IPv4 table, then (only if it is not there) among
    IPv6 sockets, which take IPv4 connections too when bound to all addresses; an IPv6
    address only among IPv6 sockets. Each table costs a walk over every socket of the
    machine, so the usual case, the daemon on 127.0.0.1, reads one.

    FileNotFoundError where there is no ``/proc/net/tcp`` (not Linux).
    """
    wanted = _plain(ipaddress.ip_address(host))
    if not TABLES[0].exists():
        raise FileNotFoundError(TABLES[0])
    needle = f":{port:04X} "
    for table in TABLES if wanted.version == 4 else TABLES[1:]:
        try:
            lines = table.read_text().splitlines()[1:]
        except FileNotFoundError:  # IPv6 is off
            continue
        found: list[Listener] = []
        for line in lines:
            if needle not in line:  # most lines, cheaply: the table may be long
                continue
            fields = line.split()
            address, local_port = _address(fields[1])
            if (
                fields[3] == LISTEN
                and local_port == port
                and (address == wanted or address.is_unspecified)
            ):
                found.append(Listener(uid=int(fields[7]), inode=int(fields[9])))
        if found:
            return found
    return []
