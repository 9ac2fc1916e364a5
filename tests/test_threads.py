"""nnctl.threads: parsing a request, what the machine offers, `auto`, and applying a count to
BLAS (checked with threadpoolctl) and numba. Nothing here depends on timing."""

import os
import subprocess
import sys

import pytest

from nnctl import threads
from nnctl.errors import UsageError

threadpoolctl = pytest.importorskip("threadpoolctl")


@pytest.mark.parametrize("text, expected", [("1", 1), ("2", 2), (" 8 ", 8), ("auto", "auto"),
                                             ("AUTO", "auto"), (3, 3), (None, None)])
def test_parse_accepts_positive_integers_and_auto(text, expected):
    assert threads.parse_threads(text) == expected


@pytest.mark.parametrize("text", ["0", "-1", "x", "1.5", "", "2x", "1025", "auto2"])
def test_parse_refuses_anything_else_as_a_usage_error(text):
    with pytest.raises(UsageError) as err:
        threads.parse_threads(text)
    assert err.value.exit_code == 2
    assert str(err.value) == (f"--threads: expected a positive integer (at most 1024) or "
                              f"'auto', got '{text}'")


PROC_STAT = """\
cpu  300 0 100 600 0 0 0 0 0 0
cpu0 100 0 50 350 0 0 0 0 0 0
cpu1 200 0 50 250 0 0 0 0 0 0
intr 1 2 3
"""


def test_cpu_ticks_sum_only_the_cpus_asked_for():
    assert threads.read_cpu_ticks({0, 1}, PROC_STAT) == (400, 1000)
    assert threads.read_cpu_ticks({1}, PROC_STAT) == (250, 500)
    assert threads.read_cpu_ticks({5}, PROC_STAT) is None


def test_steal_and_irq_count_as_busy_and_iowait_as_idle():
    text = "cpu0 10 1 2 50 7 3 4 5 0 0\n"
    assert threads.read_cpu_ticks({0}, text) == (10 + 1 + 2 + 3 + 4 + 5, 82)


def test_other_busy_cores_leaves_out_this_process():
    # 2 CPUs, 200 ticks of wall per CPU in total 400; 250 busy of which 50 are ours
    assert threads.other_busy_cores((0, 0), (250, 400), 50, 2) == pytest.approx(1.0)
    assert threads.other_busy_cores((0, 0), (10, 400), 50, 2) == 0.0
    assert threads.other_busy_cores((5, 5), (5, 5), 0, 2) == 0.0


@pytest.mark.parametrize("usable, load, expected", [
    (2, 0.0, 2), (2, 0.2, 2), (2, 0.3, 1), (2, 1.0, 1), (2, 5.0, 1),
    (8, 2.5, 5), (8, 0.0, 8), (16, 15.9, 1), (4, None, 4)])
def test_auto_takes_the_cores_others_leave_free(usable, load, expected):
    assert threads.auto_threads(usable, lambda: load) == expected


def test_auto_on_one_core_does_not_measure():
    def boom():
        raise AssertionError("measured the load on a 1-core machine")
    assert threads.auto_threads(1, boom) == 1


def test_auto_measures_without_sleeping_when_told(monkeypatch):
    load = threads.measure_other_load(threads.affinity(), sleep=lambda s: None)
    assert load is None or load >= 0.0
    n = threads.auto_threads()
    assert 1 <= n <= threads.usable_cores()


def test_physical_cores_count_hyperthreads_once(tmp_path):
    for cpu, core in enumerate([0, 0, 1, 1]):
        topo = tmp_path / f"cpu{cpu}" / "topology"
        topo.mkdir(parents=True)
        (topo / "physical_package_id").write_text("0\n")
        (topo / "core_id").write_text(f"{core}\n")
    assert threads.physical_cores({0, 1, 2, 3}, tmp_path) == 2
    assert threads.physical_cores({0, 2}, tmp_path) == 2
    assert threads.physical_cores({0, 9}, tmp_path) == 2  # unreadable topology: logical count


def test_cgroup_quota_v2_and_v1(tmp_path):
    v2 = tmp_path / "v2"
    v2.mkdir()
    (v2 / "cpu.max").write_text("max 100000\n")
    assert threads.cgroup_cpus(v2) is None
    (v2 / "cpu.max").write_text("150000 100000\n")
    assert threads.cgroup_cpus(v2) == 1.5
    v1 = tmp_path / "v1" / "cpu"
    v1.mkdir(parents=True)
    (v1 / "cpu.cfs_quota_us").write_text("-1\n")
    (v1 / "cpu.cfs_period_us").write_text("100000\n")
    assert threads.cgroup_cpus(tmp_path / "v1") is None
    (v1 / "cpu.cfs_quota_us").write_text("300000\n")
    assert threads.cgroup_cpus(tmp_path / "v1") == 3.0
    assert threads.cgroup_cpus(tmp_path / "none") is None


def test_usable_cores_is_at_most_the_affinity_mask():
    assert 1 <= threads.usable_cores() <= len(os.sched_getaffinity(0))


def test_the_default_is_one_thread():
    assert threads.resolve(None) == threads.DEFAULT == 1
    assert threads.resolve(3) == 3


@pytest.mark.parametrize("n", [1, 2, 3])
def test_use_threads_sets_blas_and_puts_it_back(n):
    before = threads.blas_threads()
    with threads.use_threads(n) as count:
        assert count == n
        assert threads.blas_threads() == n
        blas = [p for p in threadpoolctl.threadpool_info() if p["user_api"] == "blas"]
        assert blas and all(p["num_threads"] == n for p in blas)
    assert threads.blas_threads() == before


def test_numba_not_yet_imported_gets_its_pool_size_from_the_environment(monkeypatch):
    monkeypatch.setitem(sys.modules, "numba", None)  # as if numba were not imported
    monkeypatch.setenv("NUMBA_NUM_THREADS", "7")
    with threads.use_threads(2):
        assert os.environ["NUMBA_NUM_THREADS"] == "2"
    assert os.environ["NUMBA_NUM_THREADS"] == "7"
    monkeypatch.delenv("NUMBA_NUM_THREADS")
    with threads.use_threads(1):
        assert os.environ["NUMBA_NUM_THREADS"] == "1"
    assert "NUMBA_NUM_THREADS" not in os.environ


def test_numba_imported_during_the_block_keeps_the_variable_it_read(monkeypatch):
    """numba reads NUMBA_NUM_THREADS at import and again at every compile; a different value
    once its pool runs is a RuntimeError, so a command that imported it leaves the value."""
    monkeypatch.setitem(sys.modules, "numba", None)
    monkeypatch.setenv("NUMBA_NUM_THREADS", "3")  # recorded, so teardown puts back the real one
    monkeypatch.delenv("NUMBA_NUM_THREADS")
    with threads.use_threads(1):
        monkeypatch.setitem(sys.modules, "numba", object())  # imported inside the command
    assert os.environ["NUMBA_NUM_THREADS"] == "1"


def test_numba_already_imported_is_set_directly():
    numba = pytest.importorskip("numba")
    before = numba.get_num_threads()
    with threads.use_threads(1):
        assert numba.get_num_threads() == 1
    assert numba.get_num_threads() == before
    with threads.use_threads(numba.config.NUMBA_NUM_THREADS + 1):
        assert numba.get_num_threads() == numba.config.NUMBA_NUM_THREADS  # capped at the pool
    assert numba.get_num_threads() == before


def test_configure_threads_returns_the_count_and_keeps_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "numba", None)  # numba's part: the environment
    for var in ("NUMBA_NUM_THREADS", *threads.LOAD_TIME_VARS):
        monkeypatch.delenv(var, raising=False)  # restored after the test
    before = threads.blas_threads()
    try:
        assert threads.configure_threads(2) == 2
        assert threads.blas_threads() == 2
        assert all(os.environ[var] == "2" for var in ("NUMBA_NUM_THREADS", *threads.LOAD_TIME_VARS))
    finally:
        threadpoolctl.threadpool_limits(limits=before)


def test_use_threads_sets_the_load_time_variables_and_puts_them_back(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "5")
    monkeypatch.delenv("OPENBLAS_NUM_THREADS", raising=False)
    with threads.use_threads(3):
        assert all(os.environ[var] == "3" for var in threads.LOAD_TIME_VARS)
    assert os.environ["OMP_NUM_THREADS"] == "5"
    assert "OPENBLAS_NUM_THREADS" not in os.environ


def test_a_blas_loaded_after_the_setting_starts_with_the_same_count():
    """numba loads SciPy's own OpenBLAS when it compiles a parallel kernel: in a fresh process,
    a BLAS loaded inside the block gets the count too."""
    pytest.importorskip("scipy")
    code = ("from nnctl.threads import use_threads\n"
            "from threadpoolctl import threadpool_info\n"
            "with use_threads(1):\n"
            "    import scipy.linalg\n"
            "    print(sorted({p['num_threads'] for p in threadpool_info()\n"
            "                  if p['user_api'] == 'blas'}))\n")
    env = {k: v for k, v in os.environ.items()
           if k not in ("NUMBA_NUM_THREADS", *threads.LOAD_TIME_VARS)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env=env)
    assert out.stdout.strip() == "[1]"


def test_importing_the_module_loads_neither_numpy_nor_threadpoolctl():
    code = ("import sys, nnctl.threads; "
            "print(sorted(m for m in ('numpy', 'threadpoolctl', 'numba') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
