"""Serve a Python function as a patctl device over ZeroMQ.

A lab wraps its existing instrument code in a function

    def measure(theta, x):         # theta: dict name -> array [rows, cols]
        ...                        # x: float32 array [B, n_in]
        return y                   # array [B, n_out]

describes its inputs and parameter blocks (units, hard limits, safe values),
and calls serve(); `patctl train` then trains it with a device

    [device lab]
    driver = remote
    endpoint = tcp://127.0.0.1:5555

The wire format is protocols/PROTOCOL.md (frames with magic 'PT', version 2,
CRC-32 from zlib; a ROUTER socket answering DEALER clients).  This server
keeps its own safety boundary: NaN/Inf and out-of-limit values are refused
before the function is called (the controller clamps or ramps before it
sends, so a refusal here means a client that bypassed it), and a result
that is not [B, n_out] finite numbers is reported as a device error, never
sent as data.

Needs pyzmq and numpy (Debian: python3-zmq, python3-numpy).  Run
`python3 patctl_device.py --demo tcp://127.0.0.1:5555` for an example.
"""

import json
import struct
import sys
import zlib
from dataclasses import dataclass
from typing import Callable, List, Optional

import numpy as np
import zmq

MAGIC = b"PT"
VERSION = 2          # sent; version-1 frames (same layout) are accepted too
VERSIONS = (1, 2)
HEADER = struct.Struct("<2sBBHHHHIII")  # magic ver type flags frag nfrag 0 seq offset len
F_HEADER_CRC = 0x0002

DESCRIBE, DESCRIPTION, RUN, RESULT, ERROR, PING, PONG, MAKE_SAFE, OK, VJP = range(1, 11)

# PATCTL_ERR_* codes (include/patctl/error.h)
ERR_ARG, ERR_FORMAT, ERR_DEVICE, ERR_LIMIT, ERR_NONFINITE, ERR_UNSUPPORTED, ERR_PROTOCOL = (
    -1, -4, -5, -7, -8, -10, -12)


def frame(msg_type: int, seq: int, payload: bytes, flags: int = 0) -> bytes:
    """One complete frame (header, payload, CRC-32)."""
    head = HEADER.pack(MAGIC, VERSION, msg_type, flags, 0, 1, 0, seq, 0, len(payload))
    covered = head if flags & F_HEADER_CRC else head + payload
    return head + payload + struct.pack("<I", zlib.crc32(covered))


def parse(buf: bytes):
    """(type, flags, seq, payload) of a frame, or raise ValueError."""
    if len(buf) < HEADER.size + 4:
        raise ValueError("short frame")
    magic, ver, typ, flags, frag, nfrag, res, seq, offset, length = HEADER.unpack_from(buf)
    if magic != MAGIC or ver not in VERSIONS or res != 0 or frag != 0 or nfrag != 1 or offset != 0:
        raise ValueError("not a version-1/2 single frame")
    if length != len(buf) - HEADER.size - 4:
        raise ValueError("length mismatch")
    covered = buf[:HEADER.size] if flags & F_HEADER_CRC else buf[:HEADER.size + length]
    (crc,) = struct.unpack_from("<I", buf, HEADER.size + length)
    if zlib.crc32(covered) != crc:
        raise ValueError("bad CRC")
    return typ, flags, seq, bytes(buf[HEADER.size:HEADER.size + length])


@dataclass
class Block:
    """A block of trainable parameters: shape, unit, hard limits, safe value."""
    name: str
    rows: int
    cols: int
    lo: float
    hi: float
    safe: float = 0.0
    unit: str = ""
    about: str = ""
    max_step: float = 0.0      # largest change per update, 0 = unlimited
    init_lo: float = 0.0       # suggested initialisation range
    init_hi: float = 0.0

    @property
    def size(self) -> int:
        return self.rows * self.cols


@dataclass
class Device:
    """What the device is (the description) and what it does (run, make_safe)."""
    model: str
    n_in: int
    n_out: int
    in_lo: float
    in_hi: float
    blocks: List[Block]
    run: Callable[[dict, np.ndarray], np.ndarray]
    make_safe: Optional[Callable[[], None]] = None
    about: str = ""
    in_unit: str = ""
    out_unit: str = ""
    simulated: bool = False

    @property
    def n_theta(self) -> int:
        return sum(b.size for b in self.blocks)

    def description(self) -> dict:
        return {
            "protocol": VERSION, "model": self.model, "about": self.about, "n_in": self.n_in,
            "n_out": self.n_out, "in_unit": self.in_unit, "out_unit": self.out_unit,
            "in_lo": self.in_lo, "in_hi": self.in_hi, "simulated": self.simulated,
            "has_vjp": False, "driver": "python",
            "blocks": [{"name": b.name, "unit": b.unit, "about": b.about, "rows": b.rows,
                        "cols": b.cols, "lo": b.lo, "hi": b.hi, "max_step": b.max_step,
                        "safe": b.safe, "init_lo": b.init_lo, "init_hi": b.init_hi}
                       for b in self.blocks],
        }


class DeviceError(Exception):
    def __init__(self, code: int, text: str):
        super().__init__(text)
        self.code = code


def _error(code: int, text: str) -> bytes:
    return struct.pack("<i", code) + text.encode("utf-8")


def handle(dev: Device, typ: int, payload: bytes):
    """The reply (type, payload) to one request."""
    try:
        if typ == DESCRIBE:
            return DESCRIPTION, json.dumps(dev.description()).encode("utf-8")
        if typ == PING:
            return PONG, payload
        if typ == MAKE_SAFE:
            if dev.make_safe:
                dev.make_safe()
            return OK, b""
        if typ == RUN:
            return RESULT, _run(dev, payload)
        if typ == VJP:
            return ERROR, _error(ERR_UNSUPPORTED, "vjp: a lab device has no exact derivative")
        return ERROR, _error(ERR_PROTOCOL, "unknown request type 0x%02x" % typ)
    except DeviceError as e:
        return ERROR, _error(e.code, str(e))
    except Exception as e:  # the instrument code failed: report, keep serving
        return ERROR, _error(ERR_DEVICE, "%s: %s" % (type(e).__name__, e))


def _run(dev: Device, p: bytes) -> bytes:
    if len(p) < 24:
        raise DeviceError(ERR_FORMAT, "run: short payload")
    # row0 (protocol 2): where this part starts in a pooled batch; an
    # instrument's noise is its own, so the function does not need it
    qid, batch, n_theta, n_in, _row0 = struct.unpack_from("<QIIII", p)
    if len(p) != 24 + 4 * (n_theta + batch * n_in):
        raise DeviceError(ERR_FORMAT, "run: malformed payload")
    if n_theta != dev.n_theta or n_in != dev.n_in:
        raise DeviceError(ERR_ARG, "run: expected %d parameters and %d inputs, got %d and %d"
                          % (dev.n_theta, dev.n_in, n_theta, n_in))
    flat = np.frombuffer(p, dtype="<f4", count=n_theta + batch * n_in, offset=24)
    theta_flat, x = flat[:n_theta], flat[n_theta:].reshape(batch, n_in)
    if not (np.all(np.isfinite(theta_flat)) and np.all(np.isfinite(x))):
        raise DeviceError(ERR_NONFINITE, "run: NaN or Inf refused")
    if x.size and (x.min() < dev.in_lo or x.max() > dev.in_hi):
        raise DeviceError(ERR_LIMIT, "run: input outside [%g, %g]" % (dev.in_lo, dev.in_hi))
    theta, off = {}, 0
    for b in dev.blocks:
        v = theta_flat[off:off + b.size].reshape(b.rows, b.cols)
        if v.min() < b.lo or v.max() > b.hi:
            raise DeviceError(ERR_LIMIT, "run: block %s outside [%g, %g]" % (b.name, b.lo, b.hi))
        theta[b.name] = v
        off += b.size
    if batch == 0:
        y = np.zeros((0, dev.n_out), dtype="<f4")
        dev.run(theta, x)
    else:
        y = np.asarray(dev.run(theta, x), dtype="<f4")
        if y.shape != (batch, dev.n_out):
            raise DeviceError(ERR_DEVICE, "run: the function returned shape %s, expected (%d, %d)"
                              % (y.shape, batch, dev.n_out))
        if not np.all(np.isfinite(y)):
            raise DeviceError(ERR_NONFINITE, "run: the function returned NaN or Inf")
    return struct.pack("<QII", qid, batch, dev.n_out) + y.tobytes()


def serve(dev: Device, endpoint: str, curve_secret: Optional[str] = None,
          max_requests: int = 0, ready: Optional[Callable[[str], None]] = None) -> int:
    """Answer requests on endpoint (ROUTER) until max_requests (0 = forever).

    A tcp endpoint that is not loopback needs curve_secret (Z85, from
    `patctl keygen`), like `patctl serve`.  Returns the number answered."""
    local = endpoint.startswith(("ipc://", "inproc://")) or any(
        endpoint.startswith("tcp://" + h) for h in ("127.", "localhost:", "[::1]:"))
    if not local and not curve_secret:
        raise ValueError("%s is not a loopback address: serving it needs a CURVE key" % endpoint)
    ctx = zmq.Context.instance()
    sock = ctx.socket(zmq.ROUTER)
    sock.setsockopt(zmq.LINGER, 0)
    if curve_secret:
        sock.curve_server = True
        sock.curve_secretkey = curve_secret.encode("ascii")
    sock.bind(endpoint)
    bound = sock.getsockopt_string(zmq.LAST_ENDPOINT)
    if dev.make_safe:
        dev.make_safe()
    if ready:
        ready(bound)
    answered = 0
    try:
        while not max_requests or answered < max_requests:
            parts = sock.recv_multipart()
            if len(parts) != 2:
                continue
            ident, buf = parts
            try:
                typ, flags, seq, payload = parse(buf)
            except ValueError:
                continue  # not ours or damaged: nothing to answer
            rtype, rpayload = handle(dev, typ, payload)
            sock.send_multipart([ident, frame(rtype, seq, rpayload, flags & F_HEADER_CRC)])
            answered += 1
    finally:
        if dev.make_safe:
            dev.make_safe()
        sock.close()
    return answered


def demo_device() -> Device:
    """An example: an 'analog layer' y = tanh(W x + b), 4 inputs, 3 outputs."""
    state = {"W": np.zeros((3, 4), np.float32), "b": np.zeros((3, 1), np.float32)}

    def run(theta, x):
        state["W"][:], state["b"][:] = theta["W"], theta["b"]
        return np.tanh(x @ theta["W"].T + theta["b"].T)

    def make_safe():
        state["W"][:] = 0
        state["b"][:] = 0

    return Device(model="tanh-layer", about="analog layer y = tanh(W x + b) (Python)", n_in=4,
                  n_out=3, in_lo=-1.0, in_hi=1.0, in_unit="V", out_unit="V",
                  blocks=[Block("W", 3, 4, -2.0, 2.0, unit="V/V", about="gains", max_step=0.5,
                                init_lo=-0.5, init_hi=0.5),
                          Block("b", 3, 1, -1.0, 1.0, unit="V", about="offsets", max_step=0.5)],
                  run=run, make_safe=make_safe)


if __name__ == "__main__":
    if len(sys.argv) < 3 or sys.argv[1] != "--demo":
        print("usage: patctl_device.py --demo ENDPOINT [MAX_REQUESTS]", file=sys.stderr)
        sys.exit(2)
    n = int(sys.argv[3]) if len(sys.argv) > 3 else 0
    serve(demo_device(), sys.argv[2], max_requests=n,
          ready=lambda ep: print("patctl_device: ready on %s" % ep, flush=True))
