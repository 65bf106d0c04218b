"""Packaging for medseg_lab: every field comes from settings.ini (nbdev 2.4 convention)."""
from configparser import ConfigParser
import setuptools, shlex, re

config = ConfigParser(delimiters=['='])
config.read('settings.ini', encoding='utf-8')
cfg = config['DEFAULT']

expected = 'version description keywords author author_email'.split()
missing = [o for o in expected if o not in cfg]
if missing: raise ValueError(f"settings.ini is missing {missing}")

licenses = {'apache2': ('Apache Software License 2.0', 'OSI Approved :: Apache Software License')}
statuses = ['1 - Planning', '2 - Pre-Alpha', '3 - Alpha', '4 - Beta', '5 - Production/Stable',
            '6 - Mature', '7 - Inactive']
py_versions = '3.10 3.11 3.12 3.13'.split()

lic = licenses[cfg['license'].lower()]
min_python = cfg['min_python']
requirements = shlex.split(cfg.get('requirements', ''))
dev_requirements = shlex.split(cfg.get('dev_requirements', ''))
cuda_requirements = shlex.split(cfg.get('cuda_requirements', ''))
# `pip install medseg_lab[dask]` / `[slurm]`: the engines run_sweep(executor=...) can use (imported lazily; the tests
# run sweeps through both, so dev installs them too)
dask_requirements = shlex.split(cfg.get('dask_requirements', ''))
slurm_requirements = shlex.split(cfg.get('slurm_requirements', ''))
# `pip install medseg_lab[gui]`: the napari viewer of medseg_lab.viz (also part of dev, so `make test` exercises it).
# Read from settings.ini's gui_requirements when present, else taken from dev_requirements by name.
_gui_names = ('napari', 'pyside6-essentials', 'kaleido')
gui_requirements = shlex.split(cfg.get('gui_requirements', '')) or [
    r for r in dev_requirements if re.split(r'[<>=!~;\[ ]', r, maxsplit=1)[0].lower() in _gui_names]
entry_points = {'nbdev': [f'{cfg["lib_path"]}={cfg["lib_path"]}._modidx:d']}

setuptools.setup(
    name=cfg['lib_name'],
    license=lic[0],
    classifiers=['Development Status :: ' + statuses[int(cfg['status'])],
                 'Intended Audience :: ' + cfg['audience'].title(),
                 'License :: ' + lic[1],
                 'Natural Language :: ' + cfg['language'].title()] +
                ['Programming Language :: Python :: ' + o for o in py_versions[py_versions.index(min_python):]],
    url=cfg['git_url'],
    packages=setuptools.find_packages(include=[cfg['lib_path'], cfg['lib_path'] + '.*']),
    include_package_data=True,
    install_requires=requirements,
    extras_require={'dev': dev_requirements + dask_requirements + slurm_requirements, 'cuda': cuda_requirements,
                    'gui': gui_requirements, 'dask': dask_requirements, 'slurm': slurm_requirements},
    python_requires='>=' + cfg['min_python'],
    long_description=open('README.md', encoding='utf-8').read() if __import__('os').path.exists('README.md') else cfg['description'],
    long_description_content_type='text/markdown',
    zip_safe=False,
    entry_points=entry_points,
    **{k: cfg[k] for k in 'version description keywords author author_email'.split()},
)
