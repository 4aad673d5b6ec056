"""Every study is named FID, the dashboard's label for its objective, on a direct storage and through the proxy."""

from __future__ import annotations

import optuna
from _workers import storage_proxy

from lambda_search.names import FID_EMA
from lambda_search.sweep.objective import create_study
from lambda_search.sweep.storage import open_storage


def test_a_study_made_directly_or_joined_names_its_objective_fid(tmp_path):
    url = f"sqlite:///{tmp_path / 'named.db'}"
    optuna.create_study(study_name="older", storage=url)  # made before studies were named
    for name in ("new", "older"):
        create_study(name, open_storage(url))
        assert optuna.load_study(study_name=name, storage=url).metric_names == ["FID"]
    create_study("ema", open_storage(url), FID_EMA)  # [study] objective = "fid_ema"
    assert optuna.load_study(study_name="ema", storage=url).metric_names == ["FID (EMA generator)"]


def test_a_study_made_through_the_grpc_proxy_names_its_objective_fid(tmp_path):
    url = f"sqlite:///{tmp_path / 'proxied.db'}"
    with storage_proxy(url) as proxy:
        through = optuna.storages.GrpcStorageProxy(host="127.0.0.1", port=proxy.port)
        create_study("proxied", through)
        through.close()
    assert optuna.load_study(study_name="proxied", storage=url).metric_names == ["FID"]
