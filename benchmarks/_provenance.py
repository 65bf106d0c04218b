"""What every benchmark's results file records about its run (imported by the scripts in this folder)."""
import datetime, os


def load_average():
    "The 1/5/15-minute load average rounded to 0.01, or None where the OS has none."
    try: return tuple(round(v, 2) for v in os.getloadavg())
    except OSError: return None


def provenance():
    "When, where and from which commit: the UTC date, the machine, the git commit, the load average at the end."
    from medseg_lab.results import _machine, _commit
    return dict(date_utc=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds'),
                machine=_machine(), commit=_commit(os.path.dirname(os.path.abspath(__file__))), load_average=load_average())
