#![allow(missing_docs, clippy::unwrap_used)]
//! Every fixture model (scripts/onnx_fixtures.py: scikit-learn and XGBoost exports, scored by
//! onnxruntime) loads and reproduces onnxruntime's outputs: labels exactly, scores within
//! 1e-5 (absolute, or relative for regression outputs above 1 in magnitude).

use serde_json::Value as Json;
use std::path::PathBuf;
use vigil_onnx::{Data, ErrorKind, Model, Tensor, Value};

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn tensor(j: &Json) -> Tensor {
    let shape: Vec<usize> = j["shape"].as_array().unwrap().iter().map(|d| d.as_u64().unwrap() as usize).collect();
    let vals = j["data"].as_array().unwrap();
    let data = match j["dtype"].as_str().unwrap() {
        "float32" => Data::F32(vals.iter().map(|v| v.as_f64().map_or(f32::NAN, |x| x as f32)).collect()),
        "float64" => Data::F64(vals.iter().map(|v| v.as_f64().unwrap_or(f64::NAN)).collect()),
        "int64" => Data::I64(vals.iter().map(|v| v.as_i64().unwrap()).collect()),
        "object" => Data::Str(vals.iter().map(|v| v.as_str().unwrap().to_owned()).collect()),
        other => panic!("dtype {other}"),
    };
    Tensor::new(shape, data).unwrap()
}

fn close(got: f64, want: f64) -> f64 {
    // The error that counts: absolute for probabilities, relative for large regression values.
    (got - want).abs() / want.abs().max(1.0)
}

#[test]
fn every_fixture_matches_onnxruntime() {
    let mut names: Vec<String> = std::fs::read_dir(dir())
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter_map(|n| n.strip_suffix(".json").map(str::to_owned))
        .filter(|n| n != "VERSIONS")
        .collect();
    names.sort();
    assert!(names.len() >= 20, "{names:?}");
    let mut report = Vec::new();
    for name in &names {
        let fixture: Json = serde_json::from_str(&std::fs::read_to_string(dir().join(format!("{name}.json"))).unwrap()).unwrap();
        let model = Model::load(&std::fs::read(dir().join(format!("{name}.onnx"))).unwrap()).unwrap_or_else(|e| panic!("{name}: {e}"));
        let inputs = fixture["inputs"].as_object().unwrap().iter().map(|(k, v)| (k.clone(), tensor(v))).collect();
        let outputs = model.run(inputs).unwrap_or_else(|e| panic!("{name}: {e}"));
        let expected = fixture["expected"].as_object().unwrap();
        assert_eq!(outputs.len(), expected.len(), "{name}");
        let mut worst = 0f64;
        for (out_name, got) in &outputs {
            let want = &expected[out_name];
            match got {
                Value::Tensor(t) => {
                    let shape: Vec<usize> = want["shape"].as_array().unwrap().iter().map(|d| d.as_u64().unwrap() as usize).collect();
                    assert_eq!(t.shape, shape, "{name}/{out_name}: shape");
                    let w = want["data"].as_array().unwrap();
                    match &t.data {
                        Data::F32(v) => {
                            for (i, (g, e)) in v.iter().zip(w).enumerate() {
                                let d = close(f64::from(*g), e.as_f64().unwrap());
                                worst = worst.max(d);
                                assert!(d <= 1e-5, "{name}/{out_name}[{i}]: {g} vs {e}");
                            }
                        }
                        Data::I64(v) => assert_eq!(v, &w.iter().map(|x| x.as_i64().unwrap()).collect::<Vec<_>>(), "{name}/{out_name}"),
                        Data::Str(v) => assert_eq!(v, &w.iter().map(|x| x.as_str().unwrap().to_owned()).collect::<Vec<_>>(), "{name}/{out_name}"),
                        other => panic!("{name}/{out_name}: unexpected {:?}", other.elem_type()),
                    }
                }
                Value::MapsI64(_) | Value::MapsStr(_) => {
                    let rows: Vec<Vec<(String, f32)>> = match got {
                        Value::MapsI64(r) => r.iter().map(|m| m.iter().map(|(k, v)| (k.to_string(), *v)).collect()).collect(),
                        Value::MapsStr(r) => r.iter().map(|m| m.iter().map(|(k, v)| (k.clone(), *v)).collect()).collect(),
                        Value::Tensor(_) => unreachable!(),
                    };
                    let want = want["maps"].as_array().unwrap();
                    assert_eq!(rows.len(), want.len(), "{name}/{out_name}");
                    for (g, e) in rows.iter().zip(want) {
                        let e = e.as_object().unwrap();
                        assert_eq!(g.len(), e.len(), "{name}/{out_name}");
                        for (k, v) in g {
                            let d = close(f64::from(*v), e[k].as_f64().unwrap());
                            worst = worst.max(d);
                            assert!(d <= 1e-5, "{name}/{out_name}[{k}]: {v} vs {}", e[k]);
                        }
                    }
                }
            }
        }
        report.push(format!("{name:<28} max difference {worst:.1e}"));
    }
    println!("{}", report.join("\n"));
}

#[test]
fn a_graph_with_an_operator_vigil_does_not_run_is_refused_at_load_naming_it() {
    let e = Model::load(&std::fs::read(dir().join("unsupported_svc.onnx")).unwrap()).unwrap_err();
    assert_eq!(*e.kind(), ErrorKind::Unsupported);
    assert!(e.message().contains("ai.onnx.ml.SVMClassifier"), "{e}");
}

#[test]
fn requests_that_do_not_fit_are_refused_without_values() {
    let model = Model::load(&std::fs::read(dir().join("lr_binary.onnx")).unwrap()).unwrap();
    assert!(!model.accepts_missing);
    let imputing = Model::load(&std::fs::read(dir().join("imputer_scaler_lr.onnx")).unwrap()).unwrap();
    assert!(imputing.accepts_missing);
    assert!(imputing.inputs().iter().all(|i| imputing.accepts_missing_in(&i.name)), "the pipeline imputes its input first");
    assert!(!model.accepts_missing_in(&model.inputs()[0].name) && !imputing.accepts_missing_in("no such input"));
    let input = model.inputs()[0].name.clone();
    let run = |t: Tensor| model.run(vec![(input.clone(), t)]);
    let e = run(Tensor::new(vec![1, 7], Data::F32(vec![123.456; 7])).unwrap()).unwrap_err();
    assert_eq!(*e.kind(), ErrorKind::BadInput);
    assert!(!e.message().contains("123.456"), "{e}");
    let e = run(Tensor::new(vec![1, 8], Data::F64(vec![1.0; 8])).unwrap()).unwrap_err();
    assert!(e.message().contains("FP32"), "{e}");
    assert!(model.run(vec![]).unwrap_err().message().contains("missing"));
    assert!(model.run(vec![("nope".into(), Tensor::new(vec![1, 8], Data::F32(vec![0.0; 8])).unwrap())]).is_err());
    // Text where a one-hot encoder wants categories it does not know is scored as all zeros
    // (handle_unknown="ignore"); checked in the fixtures. Garbage bytes are not a model.
    assert_eq!(*Model::load(b"definitely not onnx").unwrap_err().kind(), ErrorKind::Invalid);
    assert!(Model::load(&[]).is_err());
}

/// The gateway logs a request's input after the run from what `run_keeping_inputs` gives
/// back: that must be the input as given, whole, beside the same outputs as `run`.
#[test]
fn running_while_keeping_the_inputs_gives_them_back_unchanged_with_the_same_outputs() {
    let mut checked = 0;
    for entry in std::fs::read_dir(dir()).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        let Some(name) = name.strip_suffix(".json").filter(|n| *n != "VERSIONS") else { continue };
        let fixture: Json = serde_json::from_str(&std::fs::read_to_string(dir().join(format!("{name}.json"))).unwrap()).unwrap();
        let model = Model::load(&std::fs::read(dir().join(format!("{name}.onnx"))).unwrap()).unwrap();
        let given: Vec<(String, Tensor)> = fixture["inputs"].as_object().unwrap().iter().map(|(k, v)| (k.clone(), tensor(v))).collect();
        let (outputs, mut kept) = model.run_keeping_inputs(given.clone()).unwrap();
        // Compared as printed: the inputs hold NaN (missing values), never equal to itself.
        assert_eq!(format!("{outputs:?}"), format!("{:?}", model.run(given.clone()).unwrap()), "{name}");
        // In the model's input order, which need not be the order given.
        let order: Vec<&str> = model.inputs().iter().map(|i| i.name.as_str()).collect();
        assert_eq!(kept.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(), order, "{name}");
        kept.sort_by(|a, b| a.0.cmp(&b.0));
        let mut given = given;
        given.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(format!("{kept:?}"), format!("{given:?}"), "{name}");
        checked += usize::from(given.len() > 1);
    }
    assert!(checked > 0, "no fixture with several inputs");
    // A refused run gives nothing back (the gateway answers 400 and logs nothing).
    let model = Model::load(&std::fs::read(dir().join("lr_binary.onnx")).unwrap()).unwrap();
    assert!(model.run_keeping_inputs(vec![("nope".into(), Tensor::new(vec![1, 8], Data::F32(vec![0.0; 8])).unwrap())]).is_err());
}
