"""The models shipped inside the package (their files: ``_files/<name>/model.pt``).

A model file is committed only when it changes, so that every version stays in the
repository's history; its sha256 and size here must match it (``tests/test_models.py``).
Rebuild it with ``scgtl models build --out src/scgtl/models/_files/<name> --overwrite`` and
update the entry.
"""

from scgtl.models._registry import ModelSpec, register

#: The model :func:`scgtl.models.load` examples and the README's main job start from.
DEFAULT_MODEL = "multi_study"

register(
    ModelSpec(
        name=DEFAULT_MODEL,
        corpus=(
            "12 public studies, 10,099 cells: 10x PBMC (Zheng 2017 x2, Kang 2018), an embryo "
            "time course (Yan 2013), 7 human atlases and Tabula Muris (18 mouse tissues); "
            "2,000 genes, unmeasured genes masked"
        ),
        studies=(
            "Zheng_2017_pbmcA",
            "Zheng_2017_sorted",
            "Kang_2018",
            "Yan_2013",
            "Aizaran_2019",
            "Baron_2016",
            "Croote_2018",
            "Darmanis_2015",
            "Enge_2017_manual_reannotation",
            "Lawlor_2016",
            "Zanini_2018",
            "Tabula_muris_2018_FACS",
        ),
        tissues=(
            "PBMC",
            "embryo",
            "liver",
            "pancreas",
            "brain",
            "aorta",
            "bladder",
            "diaphragm",
            "fat",
            "heart",
            "intestine",
            "kidney",
            "lung",
            "mammary gland",
            "muscle",
            "skin",
            "spleen",
            "thymus",
            "tongue",
            "trachea",
        ),  # fmt: skip
        species=("human", "mouse (symbols upper-cased to human)"),
        n_obs=10_099,
        n_genes=2_000,
        units="counts or normalized (CPM, TPM, RPKM); log1p with units='log1p'",
        sha256="66a0f06913058fa8a4da7a0943f6922692e3774bf468b96905480b99897d2478",
        size=3_410_976,
        build="scgtl models build --out DIR (SCGTL_DATA_DIR: the public studies)",
    )
)
