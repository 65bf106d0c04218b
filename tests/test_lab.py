"""JupyterLab smoke test: the server of `make lab` starts on a loopback port with a token, lists and opens a notebook
through the REST API, runs a cell in the medseg_lab kernel over the kernel websocket, and shuts down cleanly."""
import json, os, secrets, socket, subprocess, sys, time, uuid
from pathlib import Path
import pytest

REPO = Path(__file__).resolve().parents[1]
JUPYTER = REPO / ".venv" / "bin" / "jupyter"
requests = pytest.importorskip("requests")
websocket = pytest.importorskip("websocket")   # websocket-client

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0)); return s.getsockname()[1]

@pytest.fixture
def lab_server(tmp_path):
    if not JUPYTER.exists(): pytest.skip(f"{JUPYTER} missing: run `make setup`")
    port, token = _free_port(), secrets.token_hex(16)
    env = dict(os.environ, JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"), JUPYTER_CONFIG_DIR=str(tmp_path / "config"),
               OMP_NUM_THREADS="1")
    cmd = [str(JUPYTER), "lab", "--no-browser", "--ip=127.0.0.1", f"--port={port}", "--port-retries=0",
           f"--IdentityProvider.token={token}", "--ServerApp.root_dir=" + str(REPO / "nbs"),
           "--MappingKernelManager.default_kernel_name=medseg_lab"] + (["--allow-root"] if os.geteuid() == 0 else [])
    log = open(tmp_path / "lab.log", "w")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=str(REPO))
    base = f"http://127.0.0.1:{port}"
    s = requests.Session(); s.headers["Authorization"] = f"token {token}"
    deadline = time.time() + 120
    while time.time() < deadline:
        if proc.poll() is not None: break
        try:
            if s.get(f"{base}/api/status", timeout=2).ok: break
        except requests.ConnectionError: pass
        time.sleep(0.5)
    else:
        proc.kill(); pytest.fail("JupyterLab did not answer within 120 s:\n" + (tmp_path / "lab.log").read_text()[-3000:])
    if proc.poll() is not None:
        pytest.fail("JupyterLab exited at start:\n" + (tmp_path / "lab.log").read_text()[-3000:])
    try:
        yield dict(base=base, token=token, session=s, proc=proc, port=port, log=tmp_path / "lab.log")
    finally:
        if proc.poll() is None:
            proc.terminate()
            try: proc.wait(20)
            except subprocess.TimeoutExpired: proc.kill(); proc.wait(5)
        log.close()

def _execute(base, token, kernel_id, code, timeout=120):
    """Send an execute_request over the kernel websocket; return (status, text outputs), status None at the deadline.
    First asks for kernel_info until the kernel answers (a request sent while the server is still connecting the
    kernel's channels can be dropped). Reads time out every few seconds: the server's pings would otherwise keep a
    blocking read alive past the deadline."""
    ws = websocket.create_connection(f"ws://{base.split('://')[1]}/api/kernels/{kernel_id}/channels?token={token}", timeout=5)
    deadline = time.time() + timeout
    def send(msg_type, content):
        msg_id = uuid.uuid4().hex
        ws.send(json.dumps({"header": {"msg_id": msg_id, "username": "test", "session": uuid.uuid4().hex, "msg_type": msg_type,
                                       "version": "5.3", "date": ""},
                            "parent_header": {}, "metadata": {}, "channel": "shell", "content": content}))
        return msg_id
    def answers(msg_id, until):
        "The messages answering msg_id, as they arrive, until the time `until`."
        while time.time() < min(until, deadline):
            try: m = json.loads(ws.recv())
            except websocket.WebSocketTimeoutException: continue
            if m.get("parent_header", {}).get("msg_id") == msg_id: yield m
    try:
        ready = False
        while not ready and time.time() < deadline:
            ready = any(m["msg_type"] == "kernel_info_reply" for m in answers(send("kernel_info_request", {}), time.time() + 10))
        if not ready: return None, "the kernel never answered kernel_info_request"
        msg_id = send("execute_request", {"code": code, "silent": False, "store_history": False, "user_expressions": {},
                                          "allow_stdin": False, "stop_on_error": True})
        outputs, status = [], None
        for m in answers(msg_id, deadline):
            t = m["msg_type"]
            if t == "stream": outputs.append(m["content"]["text"])
            elif t in ("execute_result", "display_data"): outputs.append(m["content"]["data"].get("text/plain", ""))
            elif t == "error": outputs.append("\n".join(m["content"]["traceback"]))
            elif t == "execute_reply": status = m["content"]["status"]
            elif t == "status" and m["content"]["execution_state"] == "idle" and status is not None: break
        return status, "".join(outputs)
    finally: ws.close()

def test_lab_serves_opens_and_runs_a_notebook(lab_server):
    base, s, token = lab_server["base"], lab_server["session"], lab_server["token"]
    # no token, no access
    assert requests.get(f"{base}/api/contents", timeout=10).status_code in (401, 403)
    # the lab UI itself is served
    assert s.get(f"{base}/lab", timeout=30).status_code == 200
    # the project kernel is offered
    specs = s.get(f"{base}/api/kernelspecs", timeout=10).json()
    assert "medseg_lab" in specs["kernelspecs"], list(specs["kernelspecs"])
    # the notebooks folder is the root; open one notebook through the contents API
    names = [c["name"] for c in s.get(f"{base}/api/contents", timeout=10).json()["content"]]
    assert "40_viz.ipynb" in names and "index.ipynb" in names
    nb = s.get(f"{base}/api/contents/40_viz.ipynb", params={"content": 1}, timeout=30).json()
    assert nb["type"] == "notebook" and nb["content"]["metadata"]["kernelspec"]["name"] == "medseg_lab"
    first_code = next(c["source"] for c in nb["content"]["cells"] if c["cell_type"] == "code")
    assert "default_exp viz" in first_code
    # a session for that notebook, as the Lab UI creates when the notebook is opened
    r = s.post(f"{base}/api/sessions", json={"path": "40_viz.ipynb", "type": "notebook", "name": "40_viz.ipynb",
                                             "kernel": {"name": "medseg_lab"}}, timeout=60)
    assert r.status_code == 201, r.text
    sess = r.json(); kid = sess["kernel"]["id"]
    assert sess["kernel"]["name"] == "medseg_lab"
    # run a cell: the package imports in the kernel and computes
    status, out = _execute(base, token, kid, "import medseg_lab, sys\nfrom medseg_lab.viz import class_color\n"
                                             "print(medseg_lab.__version__, sys.prefix.endswith('.venv'), class_color(1))")
    assert status == "ok", out
    assert "(230, 25, 75)" in out and "True" in out, out
    # shut down cleanly: session (kernel) first, then the server through its API
    assert s.delete(f"{base}/api/sessions/{sess['id']}", timeout=30).status_code == 204
    assert s.get(f"{base}/api/kernels", timeout=10).json() == []
    s.post(f"{base}/api/shutdown", timeout=10)
    assert lab_server["proc"].wait(30) == 0, lab_server["log"].read_text()[-2000:]
