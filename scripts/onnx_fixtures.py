"""Generates the ONNX serving fixtures: models clinical teams export from scikit-learn and
XGBoost (skl2onnx, onnxmltools), each with input rows and onnxruntime's outputs on them.
Vigil's ONNX engine must reproduce those outputs (crates/vigil-onnx/tests/fixtures.rs).

    pip install scikit-learn skl2onnx onnxmltools xgboost onnxruntime pandas
    python3 scripts/onnx_fixtures.py

Fixed seeds: re-running gives the same models and the same outputs, though the converters
name some graph nodes differently each time, so the .onnx bytes differ. Versions used for
the committed files are recorded in fixtures/VERSIONS.json. Also writes the demo's model,
crates/vigil-cli/assets/demo-diabetes-lr.onnx (scaler and logistic regression on age, BMI
and glucose).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np

warnings.filterwarnings("ignore")

OUT = Path(__file__).resolve().parents[1] / "crates" / "vigil-onnx" / "tests" / "fixtures"
ROWS = 60


def main() -> None:
    import onnxmltools
    import onnxruntime as ort
    import pandas as pd
    import skl2onnx
    import sklearn
    import xgboost
    from onnxmltools.convert.common.data_types import FloatTensorType as MFT
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import FloatTensorType as FT
    from skl2onnx.common.data_types import StringTensorType as ST
    from sklearn.compose import ColumnTransformer
    from sklearn.datasets import make_classification, make_regression
    from sklearn.ensemble import GradientBoostingClassifier, GradientBoostingRegressor, RandomForestClassifier, RandomForestRegressor
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LinearRegression, LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import MinMaxScaler, OneHotEncoder, StandardScaler
    from sklearn.svm import SVC
    from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

    OUT.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(7)
    X, y = make_classification(600, 8, n_informative=5, random_state=0)
    X = X.astype(np.float32)
    X3, y3 = make_classification(600, 8, n_informative=5, n_classes=3, random_state=1)
    X3 = X3.astype(np.float32)
    X20, y20 = make_classification(2000, 20, n_informative=10, random_state=2)
    X20 = X20.astype(np.float32)
    Xr, yr = make_regression(600, 8, noise=5.0, random_state=3)
    Xr = Xr.astype(np.float32)
    ystr = np.where(y == 1, "sepsis", "no_sepsis")

    def rows(data):
        return data[rng.choice(len(data), ROWS, replace=False)]

    def save(name, onx, feeds, note):
        sess = ort.InferenceSession(onx.SerializeToString(), providers=["CPUExecutionProvider"])
        outs = sess.run(None, feeds)
        expected = {}
        for meta, value in zip(sess.get_outputs(), outs):
            if isinstance(value, list):  # ZipMap: a sequence of maps
                expected[meta.name] = {"maps": [{str(k): float(v) for k, v in m.items()} for m in value]}
            else:
                arr = np.asarray(value)
                data = arr.ravel().tolist()
                if arr.dtype.kind == "f":
                    data = [None if (x != x) else float(x) for x in data]
                expected[meta.name] = {"shape": list(arr.shape), "dtype": str(arr.dtype), "data": data}
        inputs = {}
        for k, v in feeds.items():
            data = v.ravel().tolist()
            if v.dtype.kind == "f":
                data = [None if (x != x) else float(x) for x in data]
            inputs[k] = {"shape": list(v.shape), "dtype": str(v.dtype), "data": data}
        (OUT / f"{name}.onnx").write_bytes(onx.SerializeToString())
        (OUT / f"{name}.json").write_text(json.dumps({"note": note, "inputs": inputs, "expected": expected}, indent=None))
        print(f"{name:<28} {sorted({n.op_type for n in onx.graph.node})}")

    def sk(name, model, data, note, **opts):
        onx = to_onnx(model, data[:1], options=opts or None, target_opset={"": 17, "ai.onnx.ml": 3})
        save(name, onx, {onx.graph.input[0].name: rows(data)}, note)

    nozip = {"zipmap": False}
    sk("lr_binary", LogisticRegression().fit(X, y), X, "logistic regression, binary", **nozip)
    sk("lr20_binary", LogisticRegression(max_iter=500).fit(X20, y20), X20, "20-feature logistic regression (the serving bench model)", **nozip)
    sk("lr_multiclass", LogisticRegression(max_iter=500).fit(X3, y3), X3, "logistic regression, 3 classes", **nozip)
    sk("lr_binary_zipmap", LogisticRegression().fit(X, y), X, "logistic regression with ZipMap")
    sk("lr_strings_zipmap", LogisticRegression().fit(X, ystr), X, "string class labels with ZipMap")
    sk("rf_binary", RandomForestClassifier(12, max_depth=6, random_state=0).fit(X, y), X, "random forest, binary", **nozip)
    sk("rf_multiclass", RandomForestClassifier(12, max_depth=6, random_state=0).fit(X3, y3), X3, "random forest, 3 classes", **nozip)
    sk("rf_strings_zipmap", RandomForestClassifier(6, max_depth=4, random_state=0).fit(X, ystr), X, "random forest, string labels, ZipMap")
    sk("dt_binary", DecisionTreeClassifier(max_depth=5, random_state=0).fit(X, y), X, "decision tree", **nozip)
    sk("gb_binary", GradientBoostingClassifier(n_estimators=25, max_depth=3, random_state=0).fit(X, y), X, "gradient boosting, binary", **nozip)
    sk("gb_multiclass", GradientBoostingClassifier(n_estimators=15, max_depth=3, random_state=0).fit(X3, y3), X3, "gradient boosting, 3 classes", **nozip)
    sk("rf_regressor", RandomForestRegressor(12, max_depth=6, random_state=0).fit(Xr, yr), Xr, "random forest regressor")
    sk("gb_regressor", GradientBoostingRegressor(n_estimators=25, max_depth=3, random_state=0).fit(Xr, yr), Xr, "gradient boosting regressor")
    sk("dt_regressor", DecisionTreeRegressor(max_depth=6, random_state=0).fit(Xr, yr), Xr, "decision tree regressor")
    sk("linear_regressor", LinearRegression().fit(Xr, yr), Xr, "linear regression")
    sk("scaler_rf", make_pipeline(StandardScaler(), RandomForestClassifier(8, max_depth=5, random_state=0)).fit(X, y), X, "scaler then random forest", **nozip)
    sk("minmax_lr", make_pipeline(MinMaxScaler(), LogisticRegression()).fit(X, y), X, "min-max scaler then logistic regression", **nozip)

    # Imputer + scaler + LR, with missing values in the rows scored.
    Xn = X.copy()
    Xn[rng.random(Xn.shape) < 0.1] = np.nan
    pipe = make_pipeline(SimpleImputer(strategy="median"), StandardScaler(), LogisticRegression()).fit(Xn, y)
    onx = to_onnx(pipe, Xn[:1], options=nozip, target_opset={"": 17, "ai.onnx.ml": 3})
    save("imputer_scaler_lr", onx, {onx.graph.input[0].name: rows(Xn)}, "median imputer, scaler, logistic regression; rows with NaN")

    # XGBoost through onnxmltools.
    for name, model, data, target in (
        ("xgb_binary", xgboost.XGBClassifier(n_estimators=25, max_depth=3, random_state=0), X, y),
        ("xgb_multiclass", xgboost.XGBClassifier(n_estimators=15, max_depth=3, random_state=0), X3, y3),
        ("xgb_regressor", xgboost.XGBRegressor(n_estimators=25, max_depth=3, random_state=0), Xr, yr),
    ):
        model.fit(data, target)
        onx = onnxmltools.convert_xgboost(model, initial_types=[("input", MFT([None, data.shape[1]]))], target_opset=15)
        save(name, onx, {"input": rows(data)}, f"XGBoost {name.split('_')[1]} via onnxmltools")

    # A ColumnTransformer: numeric columns imputed and scaled, categories one-hot encoded
    # (unknown categories ignored), one input per column as skl2onnx makes them.
    n = 600
    df = pd.DataFrame(X[:n, :5].copy(), columns=[f"lab{i}" for i in range(5)])
    df.loc[rng.random(n) < 0.08, "lab0"] = np.nan
    df["unit"] = np.array(["icu", "ward", "er", "ward"])[rng.integers(0, 4, n)]
    df["sex"] = np.array(["F", "M"])[rng.integers(0, 2, n)]
    num = [f"lab{i}" for i in range(5)]
    ct = ColumnTransformer([("num", make_pipeline(SimpleImputer(), StandardScaler()), num),
                            ("cat", OneHotEncoder(handle_unknown="ignore"), ["unit", "sex"])])
    for zipmap, clf, name in ((False, LogisticRegression(), "columns_onehot_lr"), (True, LogisticRegression(), "columns_onehot_lr_zipmap"),
                              (False, RandomForestClassifier(8, max_depth=5, random_state=0), "columns_onehot_rf")):
        p = make_pipeline(ct, clf).fit(df, y[:n])
        types = [(c, FT([None, 1])) for c in num] + [("unit", ST([None, 1])), ("sex", ST([None, 1]))]
        onx = to_onnx(p, initial_types=types, options={"zipmap": zipmap}, target_opset={"": 17, "ai.onnx.ml": 3})
        idx = rng.choice(n, ROWS, replace=False)
        feeds = {c: df[c].to_numpy(dtype=np.float32)[idx].reshape(-1, 1) for c in num}
        units = df["unit"].to_numpy()[idx].copy()
        units[:3] = "nicu"  # a category not seen in training: all zeros, as handle_unknown="ignore"
        feeds["unit"] = units.astype(object).reshape(-1, 1)
        feeds["sex"] = df["sex"].to_numpy()[idx].astype(object).reshape(-1, 1)
        save(name, onx, feeds, f"ColumnTransformer (imputer, scaler, one-hot) then {type(clf).__name__}{' with ZipMap' if zipmap else ''}")

    # A graph Vigil refuses at deploy time (the message names the operator).
    svc = SVC(probability=True, random_state=0).fit(X[:200], y[:200])
    onx = to_onnx(svc, X[:1], options=nozip, target_opset={"": 17, "ai.onnx.ml": 3})
    (OUT / "unsupported_svc.onnx").write_bytes(onx.SerializeToString())

    # The demo's model (`vigil demo`): diabetes risk from age, BMI and glucose, so that the
    # gateway serves something on a fresh demo store.
    drng = np.random.default_rng(3)
    n = 4000
    age = drng.normal(55, 14, n).clip(18, 95)
    bmi = drng.normal(28, 5, n).clip(15, 55)
    glucose = drng.normal(105, 25, n).clip(60, 300)
    logit = -14 + 0.05 * age + 0.12 * bmi + 0.06 * glucose
    yd = (drng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    Xd = np.column_stack([age, bmi, glucose]).astype(np.float32)
    demo = make_pipeline(StandardScaler(), LogisticRegression()).fit(Xd, yd)
    onx = to_onnx(demo, initial_types=[("features", FT([None, 3]))], options={"zipmap": False}, target_opset={"": 17, "ai.onnx.ml": 3})
    assets = OUT.parents[2] / "vigil-cli" / "assets"
    assets.mkdir(exist_ok=True)
    (assets / "demo-diabetes-lr.onnx").write_bytes(onx.SerializeToString())

    versions = {"scikit-learn": sklearn.__version__, "skl2onnx": skl2onnx.__version__, "onnxmltools": onnxmltools.__version__,
                "xgboost": xgboost.__version__, "onnxruntime": ort.__version__}
    (OUT / "VERSIONS.json").write_text(json.dumps(versions, indent=1) + "\n")


if __name__ == "__main__":
    main()
