"""Package setup. Also used by Beam workers on Dataflow/Flink/Spark (--setup_file ./setup.py)."""
from setuptools import find_packages, setup


def _requirements():
    with open("requirements.txt") as f:
        return [line.strip() for line in f if line.strip() and not line.startswith("#")]


setup(
    name="stca-ranking",
    version="0.1.0",
    description="Long-sequence ranking: STCA + request level batching + length extrapolation",
    python_requires=">=3.10,<3.12",
    packages=find_packages(include=["core", "core.*", "pipeline", "pipeline.*", "model", "model.*",
                                    "beam_jobs", "beam_jobs.*", "serving", "serving.*"]),
    install_requires=_requirements(),
    entry_points={"console_scripts": ["stca = pipeline.cli:main"]},
)
