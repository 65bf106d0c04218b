"""What every benchmark's results file records about its run (imported by the scripts in this folder)."""
import datetime, json, os, sys


def load_average():
    "The 1/5/15-minute load average rounded to 0.01, or None where the OS has none."
    try: return tuple(round(v, 2) for v in os.getloadavg())
    except OSError: return None


def provenance():
    "When, where and from which commit: the UTC date, the machine, the git commit, the load average at the end."
    from medseg_lab.results import _machine, _commit
    return dict(date_utc=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds'),
                machine=_machine(), commit=_commit(os.path.dirname(os.path.abspath(__file__))), load_average=load_average())


def write_results(out, record, text):
    """Write `record` with the command line and `provenance()` to `out` (JSON), and `text` to the .txt beside it. The
    provenance is taken before either file changes, so that a run on a clean checkout records a clean commit (opening
    the tracked results file first made every such run '+dirty'); each file is replaced atomically."""
    from medseg_lab.core import atomic_write_text
    rec = dict(command=' '.join(['python'] + sys.argv), provenance=provenance(), **record)
    for path, data in ((out, json.dumps(rec, indent=1)), (os.path.splitext(out)[0] + '.txt', text)):
        atomic_write_text(path, data.rstrip('\n') + '\n')
