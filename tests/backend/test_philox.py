"""The device generator (nnctl/backend/philox.py): Philox4x32-10 against Random123's
known-answer vectors, its CUDA text compiled for the host against the NumPy reference value
for value, and the stream and state rules a checkpoint relies on."""

from __future__ import annotations

import ctypes
import shutil
import subprocess

import numpy as np
import pytest

from nnctl.backend.philox import (ADVANCE_BODY, NAME, UNIFORM_BODY, PhiloxBits,
                                  PhiloxGenerator, philox_blocks, uniform)


def _words(text: str) -> list[int]:
    return [int(w, 16) for w in text.split()]


# Random123 1.14, tests/kat_vectors: counter words, key words, output words
KNOWN_ANSWERS = [
    ("00000000 00000000 00000000 00000000", "00000000 00000000",
     "6627e8d5 e169c58d bc57ac4c 9b00dbd8"),
    ("ffffffff ffffffff ffffffff ffffffff", "ffffffff ffffffff",
     "408f276d 41c83b0e a20bc7c6 6d5451fd"),
    ("243f6a88 85a308d3 13198a2e 03707344", "a4093822 299f31d0",
     "d16cfe09 94fdcceb 5001e420 24126ea1"),
]


@pytest.mark.parametrize("counter, key, expected", KNOWN_ANSWERS)
def test_philox_matches_the_random123_known_answers(counter, key, expected):
    got = philox_blocks(np.array([_words(counter)], np.uint32), tuple(_words(key)))
    assert got[0].tolist() == _words(expected)


def test_float32_values_are_24_bit_words_and_float64_values_53_bit_pairs():
    key = (7, 11)
    block = philox_blocks(np.array([[5, 0, 0, 0], [6, 0, 0, 0]], np.uint32), key)
    f32 = uniform(key, 5, 8, "float32")
    assert f32.dtype == np.float32
    assert np.array_equal(f32, (block.reshape(-1) >> 8).astype(np.float64) / 2 ** 24)
    f64 = uniform(key, 5, 4, "float64")
    words = block.reshape(-1).astype(np.uint64)
    x = (words[1::2] << np.uint64(32)) | words[0::2]
    assert np.array_equal(f64, (x >> np.uint64(11)).astype(np.float64) / 2 ** 53)


def test_the_counter_carries_into_its_high_word():
    key = (1, 2)
    near = uniform(key, 2 ** 32 - 1, 8, "float32")  # blocks 2^32 - 1 and 2^32
    block = philox_blocks(np.array([[2 ** 32 - 1, 0, 0, 0], [0, 1, 0, 0]], np.uint32), key)
    assert np.array_equal(near, (block.reshape(-1) >> 8).astype(np.float32) / 2 ** 24)


def _host_library(tmp_path, dtype):
    ctype = "float" if dtype == "float32" else "double"
    source = tmp_path / f"philox_{dtype}.cpp"
    source.write_text(
        f'typedef {ctype} T;\nextern "C" void draw(const unsigned int* s, T* out, long long n)'
        " {\nfor (long long i = 0; i < n; i++) {\nT v;\n" + UNIFORM_BODY[dtype]
        + "\nout[i] = v;\n}\n}\n"
        'extern "C" void advance(unsigned int* s, unsigned long long blocks) {\n'
        + ADVANCE_BODY + "\n}\n")
    library = tmp_path / f"philox_{dtype}.so"
    subprocess.run(["g++", "-O2", "-shared", "-fPIC", "-o", str(library), str(source)],
                   check=True, capture_output=True, timeout=120)
    return ctypes.CDLL(str(library))


@pytest.mark.skipif(shutil.which("g++") is None, reason="needs g++")
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_the_device_kernel_compiled_for_the_host_draws_the_reference_values(tmp_path, dtype):
    library = _host_library(tmp_path, dtype)
    pointer = ctypes.c_void_p
    for counter in (0, 12345, 2 ** 32 - 3, 2 ** 40 + 17):
        state = np.array([0x243F6A88, 0x85A308D3, counter & 0xFFFFFFFF, counter >> 32],
                         np.uint32)
        out = np.empty(1001, dtype)
        library.draw(state.ctypes.data_as(pointer), out.ctypes.data_as(pointer),
                     ctypes.c_longlong(out.size))
        want = uniform((0x243F6A88, 0x85A308D3), counter, out.size, dtype)
        assert np.array_equal(out, want), counter
        library.advance(state.ctypes.data_as(pointer), ctypes.c_ulonglong(2 ** 32 + 5))
        moved = counter + 2 ** 32 + 5
        assert state.tolist() == [0x243F6A88, 0x85A308D3, moved & 0xFFFFFFFF, moved >> 32]


@pytest.mark.slow  # nvcc takes 5-15 s
@pytest.mark.skipif(shutil.which("nvcc") is None, reason="needs nvcc")
def test_the_device_kernels_compile_with_nvcc(tmp_path):
    path = tmp_path / "philox.cu"
    path.write_text(
        "\n".join(
            f'extern "C" __global__ void draw_{dtype}(const unsigned int* s, '
            f"{'float' if dtype == 'float32' else 'double'}* out, long long n) {{\n"
            "long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x;\n"
            f"if (i >= n) return;\n{'float' if dtype == 'float32' else 'double'} v;\n"
            + UNIFORM_BODY[dtype] + "\nout[i] = v;\n}" for dtype in ("float32", "float64"))
        + '\nextern "C" __global__ void advance(unsigned int* s, unsigned long long blocks) {'
        + ADVANCE_BODY + "}\n")
    result = subprocess.run(["nvcc", "-c", "-o", str(tmp_path / "philox.o"), str(path)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr


def test_draws_continue_the_stream_and_a_saved_state_replays_it():
    g = PhiloxGenerator(np, 42)
    whole = PhiloxGenerator(np, 42).random(16)
    first, second = g.random(8), g.random(dtype="float32", out=np.empty((2, 4), np.float32))
    assert np.array_equal(np.concatenate([first, second.reshape(-1)]), whole)
    saved = g.bit_generator.state
    assert saved == {"bit_generator": NAME, "key": saved["key"], "counter": 4}
    later = g.random((3, 5), dtype="float64")
    g.bit_generator.state = saved
    assert np.array_equal(g.random((3, 5), dtype="float64"), later)
    # another seed, another key and other values
    assert PhiloxGenerator(np, 43).bit_generator.key != g.bit_generator.key
    assert not np.array_equal(PhiloxGenerator(np, 43).random(16), whole)


def test_the_values_are_uniform_on_the_unit_interval():
    values = PhiloxGenerator(np, 0).random(200_000, dtype="float64")
    assert values.min() >= 0.0 and values.max() < 1.0
    # Kolmogorov-Smirnov distance against U(0, 1); 1.63 / sqrt(n) is the 1% critical value
    ordered = np.sort(values)
    n = len(ordered)
    distance = max((np.arange(1, n + 1) / n - ordered).max(), (ordered - np.arange(n) / n).max())
    assert distance < 1.63 / np.sqrt(n)
    f32 = PhiloxGenerator(np, 0).random(100_000)
    assert np.array_equal(f32 * 2 ** 24, np.floor(f32 * 2 ** 24))  # multiples of 2^-24
    assert abs(f32.mean() - 0.5) < 0.005


@pytest.mark.parametrize("state", [
    {"bit_generator": "PCG64", "state": {}},
    {"bit_generator": NAME, "key": [1], "counter": 0},
    {"bit_generator": NAME, "key": [1, 2 ** 32], "counter": 0},
    {"bit_generator": NAME, "key": [1, 2], "counter": -1},
    {"bit_generator": NAME, "key": [1, 2], "counter": 1.0},
    "not a dict",
])
def test_a_malformed_state_is_refused(state):
    with pytest.raises(ValueError):
        PhiloxBits().state = state


def test_the_strict_backend_gets_device_arrays_from_the_generator():
    from nnctl.backend.strict import StrictArray, StrictBackend

    backend = StrictBackend()
    g = PhiloxGenerator(backend.xp, 5)
    out = backend.xp.empty((4, 3), dtype="float32")
    assert g.random(dtype="float32", out=out) is out
    assert isinstance(out, StrictArray)
    assert np.array_equal(backend.to_host(out), PhiloxGenerator(np, 5).random((4, 3)))


def test_on_cupy_a_draw_is_two_kernels_typed_as_cupy_names_types():
    """A stand-in CuPy records the kernels: the values kernel's output is declared with
    NumPy's dtype name (CuPy reads "float" as float64), the counter kernel runs one thread."""
    import types

    built, calls = [], []

    class ElementwiseKernel:
        def __init__(self, in_params, out_params, operation, name, **kwargs):
            built.append((in_params, out_params, name))
            self.name = name

        def __call__(self, *args, size=None):
            calls.append((self.name, size))

    class DeviceArray(np.ndarray):
        def get(self):
            return np.asarray(self)

        def set(self, host):
            self[...] = host

    fake = types.SimpleNamespace(
        __name__="cupy", ElementwiseKernel=ElementwiseKernel,
        zeros=lambda n, dtype: np.zeros(n, dtype).view(DeviceArray),
        empty=lambda shape, dtype: np.empty(shape, dtype).view(DeviceArray),
        copyto=np.copyto)
    g = PhiloxGenerator(fake, 9)
    assert g.bit_generator.state["key"] == list(PhiloxBits(9).key)
    for dtype in ("float32", "float64"):
        g.random((3, 4), dtype=dtype)
    assert [b[1] for b in built[::2]] == ["float32 v", "float64 v"]
    assert built[1] == ("uint64 blocks", "raw uint32 s", "nnctl_philox_advance")
    assert calls == [("nnctl_philox_float32", None), ("nnctl_philox_advance", 1),
                     ("nnctl_philox_float64", None), ("nnctl_philox_advance", 1)]
