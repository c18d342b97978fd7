"""Unit tests of patctl_device.py: the frames match PROTOCOL.md's vectors,
requests are checked (shapes, NaN, limits, results) before anything is
trusted.  Run with /usr/bin/python3 (python3-zmq, python3-numpy); exits 77
(skipped) when they are missing."""
import os
import struct
import sys
import unittest

try:
    import numpy as np
    import zmq  # noqa: F401
except ImportError as e:
    print("skipped: %s (install python3-zmq and python3-numpy)" % e)
    sys.exit(77)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import patctl_device as pd  # noqa: E402


def hexb(s):
    return bytes(int(x, 16) for x in s.split())


class Frames(unittest.TestCase):
    def test_vectors(self):
        self.assertEqual(pd.frame(pd.PING, 1, b"hi"), hexb(
            "50 54 02 06 00 00 00 00 01 00 00 00 01 00 00 00 00 00 00 00 02 00 00 00 68 69 bf 04 cd 4b"))
        res = struct.pack("<QII", 7, 2, 1) + struct.pack("<2f", 1.5, -0.125)
        self.assertEqual(pd.frame(pd.RESULT, 0x01020304, res)[-4:], hexb("a2 c5 14 72"))
        run = struct.pack("<QIIII", 7, 2, 2, 1, 16) + struct.pack("<4f", 0.5, -1.0, 0.25, 2.0)
        self.assertEqual(pd.frame(pd.RUN, 0x01020304, run)[-4:], hexb("e4 27 96 81"))
        self.assertEqual(pd.frame(pd.RUN, 0x01020304, run, pd.F_HEADER_CRC)[-4:], hexb("e8 c3 96 23"))
        # a version-1 frame is still understood
        v1 = hexb("50 54 01 06 00 00 00 00 01 00 00 00 01 00 00 00 00 00 00 00 02 00 00 00 68 69 97 ad d3 13")
        self.assertEqual(pd.parse(v1)[2:], (1, b"hi"))

    def test_parse_rejects_damage(self):
        f = bytearray(pd.frame(pd.PING, 5, b"abc"))
        self.assertEqual(pd.parse(bytes(f))[2:], (5, b"abc"))
        for i in range(len(f)):
            g = bytearray(f)
            g[i] ^= 0x10
            with self.assertRaises(ValueError):
                pd.parse(bytes(g))


class Requests(unittest.TestCase):
    def setUp(self):
        self.dev = pd.demo_device()

    def run_req(self, theta, x, batch=None, n_theta=15):
        x = np.asarray(x, np.float32)
        b = x.shape[0] if batch is None else batch
        p = struct.pack("<QIIII", 3, b, n_theta, 4, 0) + np.asarray(theta, "<f4").tobytes() + x.tobytes()
        return pd.handle(self.dev, pd.RUN, p)

    def test_run(self):
        th = np.linspace(-0.5, 0.5, 15).astype(np.float32)
        x = np.full((2, 4), 0.25, np.float32)
        t, p = self.run_req(th, x)
        self.assertEqual(t, pd.RESULT)
        qid, b, n_out = struct.unpack_from("<QII", p)
        self.assertEqual((qid, b, n_out), (3, 2, 3))
        y = np.frombuffer(p, "<f4", offset=16).reshape(2, 3)
        want = np.tanh(x @ th[:12].reshape(3, 4).T + th[12:])
        np.testing.assert_allclose(y, want, rtol=1e-6)

    def code(self, reply):
        t, p = reply
        self.assertEqual(t, pd.ERROR)
        return struct.unpack_from("<i", p)[0]

    def test_refusals(self):
        th = np.zeros(15, np.float32)
        x = np.zeros((1, 4), np.float32)
        self.assertEqual(self.code(self.run_req(th, x, n_theta=14)), pd.ERR_FORMAT)
        bad = th.copy()
        bad[0] = np.nan
        self.assertEqual(self.code(self.run_req(bad, x)), pd.ERR_NONFINITE)
        bad[0] = 3.0  # W in [-2, 2]
        self.assertEqual(self.code(self.run_req(bad, x)), pd.ERR_LIMIT)
        self.assertEqual(self.code(self.run_req(th, x + 2)), pd.ERR_LIMIT)
        self.assertEqual(self.code(pd.handle(self.dev, 0x7E, b"")), pd.ERR_PROTOCOL)
        self.dev.run = lambda theta, x: np.zeros((x.shape[0], 2))  # wrong shape
        self.assertEqual(self.code(self.run_req(th, x)), pd.ERR_DEVICE)
        self.dev.run = lambda theta, x: np.full((x.shape[0], 3), np.inf)
        self.assertEqual(self.code(self.run_req(th, x)), pd.ERR_NONFINITE)
        self.dev.run = lambda theta, x: 1 / 0
        self.assertEqual(self.code(self.run_req(th, x)), pd.ERR_DEVICE)


if __name__ == "__main__":
    unittest.main()
