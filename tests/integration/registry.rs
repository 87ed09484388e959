//! The joint model registry (`joint_models`) on both backends: a backfill
//! registers its joint model, a rerun reuses it, another definition under the
//! same id is an error naming what differs and writing nothing, `--replace`
//! redefines it and deletes what the old definition stored, and the built-in
//! ids keep their feature space. Through the library and through the CLI.

use chrono::NaiveDate;
use stabspace::backfill::{
    backfill_numeric_embeddings, backfill_numeric_scenario_embeddings, NumericBackfill, ScenarioBackfill,
};
use stabspace::joint::registry::{find, joint_models, IDENTITY_KIND, NO_PROFILE};
use stabspace::joint::{
    backfill_joint_profiles, backfill_joint_scenarios, backfill_joint_states, ProfileBackfill,
    ScenarioProjection, StateBackfill, Weights,
};
use stabspace::progress::Quiet;
use stabspace::storage::Db;
use stabspace::synth::{HISTORICAL_SET, MONTE_CARLO_SET};

use crate::both_backends;
use crate::support::{count, import_all, small_market, text, TestDb};

both_backends!(
    a_backfill_registers_its_joint_model_and_a_rerun_reuses_it,
    another_definition_under_the_same_id_is_an_error_unless_replace,
    built_in_ids_keep_their_feature_space,
    the_cli_lists_registers_and_replaces_joint_models,
    concurrent_backfills_of_a_new_joint_model_queue_and_both_succeed,
);

const V2: &str = "joint-stab-fragility-v2";
const PROF: &str = "joint-stab-prof-v1";

async fn numeric(db: &Db, as_of: NaiveDate, model: &str) {
    backfill_numeric_embeddings(
        db,
        &NumericBackfill {
            as_of,
            window_days: 63,
            horizon_days: 20,
            market_id: "US_EQ".into(),
            limit: None,
            model_id: model.into(),
        },
        &Quiet,
    )
    .await
    .expect("numeric states");
}

async fn numeric_scenarios(db: &Db, set: &str, model: &str) {
    backfill_numeric_scenario_embeddings(
        db,
        &ScenarioBackfill {
            scenario_set_id: set.into(),
            model_id: model.into(),
            horizon_days: 20,
            limit: None,
        },
        &Quiet,
    )
    .await
    .expect("numeric scenarios");
}

fn states(as_of: NaiveDate, joint: &str, stab: &str, profile: Option<&str>) -> StateBackfill {
    StateBackfill {
        as_of,
        market_id: "US_EQ".into(),
        region: None,
        stab_model_id: stab.into(),
        profile_model_id: profile.map(String::from),
        joint_model_id: joint.into(),
        weights: Weights::default(),
        limit: None,
        replace: false,
    }
}

fn projection(set: &str, joint: &str, scenario: &str) -> ScenarioProjection {
    ScenarioProjection {
        scenario_set_id: set.into(),
        scenario_model_id: scenario.into(),
        joint_model_id: joint.into(),
        weights: Weights::default(),
        limit: None,
        replace: false,
    }
}

async fn joint_rows(db: &Db, model: &str, entity_type: &str) -> i64 {
    let sql = "SELECT COUNT(*) FROM joint_embeddings WHERE model_id = $1 AND entity_type = $2";
    stabspace::with_pool!(db, p => sqlx::query_scalar::<_, i64>(sql).bind(model).bind(entity_type).fetch_one(p).await)
        .expect("count")
}

async fn a_backfill_registers_its_joint_model_and_a_rerun_reuses_it(t: TestDb) {
    let (_, g) = small_market(t.dir.path());
    import_all(&t.db, &g).await;
    let d = g.last_date;
    assert!(
        joint_models(&t.db).await.unwrap().is_empty(),
        "nothing registered before a backfill"
    );
    numeric(&t.db, d, "num-stab-core-v2").await;

    let s = backfill_joint_states(&t.db, &states(d, V2, "num-stab-core-v2", None), &Quiet)
        .await
        .unwrap();
    assert!(s.summary.registration.registered, "{s}");
    assert!(s.to_string().contains("registered a new joint model"), "{s}");
    let r = find(&t.db, V2).await.unwrap().expect("registered");
    assert_eq!(r.kind, IDENTITY_KIND);
    assert_eq!(r.feature_space.as_deref(), Some("stab-v2-signature-h20"));
    assert_eq!(r.stab_model_id.as_deref(), Some("num-stab-core-v2"));
    assert_eq!(r.profile_model_id.as_deref(), Some(NO_PROFILE));
    assert_eq!((r.w_stab, r.w_prof), (Some(1.0), Some(1.0)));
    assert_eq!(r.scenario_model_id, None, "not known until a projection");
    // `YYYY-MM-DD HH:MM:SS` (UTC) on both backends.
    let at = r.registered_at.as_bytes();
    assert!(
        at.len() == 19
            && at.iter().enumerate().all(|(i, c)| match i {
                4 | 7 => *c == b'-',
                10 => *c == b' ',
                13 | 16 => *c == b':',
                _ => c.is_ascii_digit(),
            }),
        "{}",
        r.registered_at
    );

    // The projection records the scenario branch; a rerun of either changes nothing.
    numeric_scenarios(&t.db, HISTORICAL_SET, "num-scenario-core-v2").await;
    let s = backfill_joint_scenarios(
        &t.db,
        &projection(HISTORICAL_SET, V2, "num-scenario-core-v2"),
        &Quiet,
    )
    .await
    .unwrap();
    assert!(!s.registration.registered);
    assert_eq!(s.registration.completed, vec!["scenario branch", "w_scen"]);
    let r2 = find(&t.db, V2).await.unwrap().unwrap();
    assert_eq!(r2.scenario_model_id.as_deref(), Some("num-scenario-core-v2"));
    assert_eq!(r2.registered_at, r.registered_at, "registered once");
    let again = backfill_joint_states(&t.db, &states(d, V2, "num-stab-core-v2", None), &Quiet)
        .await
        .unwrap();
    assert_eq!(again.summary.registration, Default::default(), "{again}");
    let again = backfill_joint_scenarios(
        &t.db,
        &projection(HISTORICAL_SET, V2, "num-scenario-core-v2"),
        &Quiet,
    )
    .await
    .unwrap();
    assert_eq!(again.registration, Default::default());
    assert_eq!(joint_models(&t.db).await.unwrap(), vec![r2]);
}

async fn another_definition_under_the_same_id_is_an_error_unless_replace(t: TestDb) {
    let (_, g) = small_market(t.dir.path());
    import_all(&t.db, &g).await;
    let d = g.last_date;
    numeric(&t.db, d, "num-stab-core-v1").await;
    numeric(&t.db, d, "num-stab-core-v2").await;
    backfill_joint_profiles(
        &t.db,
        &ProfileBackfill {
            as_of: d,
            model_id: "joint-profile-core-v1".into(),
            limit: None,
        },
    )
    .await
    .unwrap();
    numeric_scenarios(&t.db, MONTE_CARLO_SET, "num-scenario-core-v1").await;

    // A user-named model of profile-augmented v1 states, and its scenarios.
    backfill_joint_states(
        &t.db,
        &states(d, PROF, "num-stab-core-v1", Some("joint-profile-core-v1")),
        &Quiet,
    )
    .await
    .unwrap();
    backfill_joint_scenarios(
        &t.db,
        &projection(MONTE_CARLO_SET, PROF, "num-scenario-core-v1"),
        &Quiet,
    )
    .await
    .unwrap();
    let states_n = joint_rows(&t.db, PROF, "INSTRUMENT").await;
    let scen_n = joint_rows(&t.db, PROF, "SCENARIO").await;
    assert!(states_n > 0 && scen_n > 0);
    let before = find(&t.db, PROF).await.unwrap().unwrap();

    // Plain states under it: an error naming the profile branch; nothing written.
    let e = backfill_joint_states(&t.db, &states(d, PROF, "num-stab-core-v1", None), &Quiet)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains(&format!(
            "joint model {PROF} is registered as {PROF} (identity-weighted-average)"
        )) && e.contains("profile branch none (registered: joint-profile-core-v1)")
            && e.contains("--replace"),
        "{e}"
    );
    // Other weights where two branches meet: named too.
    let e = backfill_joint_states(
        &t.db,
        &StateBackfill {
            weights: Weights {
                stab: 2.0,
                ..Weights::default()
            },
            ..states(d, PROF, "num-stab-core-v1", Some("joint-profile-core-v1"))
        },
        &Quiet,
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(e.contains("w_stab 2 (registered: 1)"), "{e}");
    // Another scenario encoder of another space: named with both spaces.
    numeric_scenarios(&t.db, MONTE_CARLO_SET, "num-scenario-core-v2").await;
    let e = backfill_joint_scenarios(
        &t.db,
        &projection(MONTE_CARLO_SET, PROF, "num-scenario-core-v2"),
        &Quiet,
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("feature space stab-v2-signature-h20 (registered: stab-v1)")
            && e.contains("scenario branch num-scenario-core-v2 (registered: num-scenario-core-v1)"),
        "{e}"
    );
    assert_eq!(joint_rows(&t.db, PROF, "INSTRUMENT").await, states_n);
    assert_eq!(joint_rows(&t.db, PROF, "SCENARIO").await, scen_n);
    assert_eq!(
        find(&t.db, PROF).await.unwrap().unwrap(),
        before,
        "the registry unchanged"
    );

    // --replace with the same space: the states of the old definition go, the scenarios stay.
    let s = backfill_joint_states(
        &t.db,
        &StateBackfill {
            replace: true,
            ..states(d, PROF, "num-stab-core-v1", None)
        },
        &Quiet,
    )
    .await
    .unwrap();
    let said = s.to_string();
    assert!(
        said.contains(&format!(
            "--replace: {PROF}: profile branch joint-profile-core-v1 → none"
        )) && said.contains(&format!("deleted {states_n} instrument row(s)")),
        "{said}"
    );
    assert_eq!(joint_rows(&t.db, PROF, "SCENARIO").await, scen_n);
    let r = find(&t.db, PROF).await.unwrap().unwrap();
    assert_eq!(r.profile_model_id.as_deref(), Some(NO_PROFILE));
    assert_eq!(r.scenario_model_id.as_deref(), Some("num-scenario-core-v1"));

    // --replace into another space: the scenarios of the old space go too, and
    // the scenario branch is unknown again.
    let s = backfill_joint_states(
        &t.db,
        &StateBackfill {
            replace: true,
            ..states(d, PROF, "num-stab-core-v2", None)
        },
        &Quiet,
    )
    .await
    .unwrap();
    let said = s.to_string();
    assert!(said.contains(&format!("and {scen_n} scenario row(s)")), "{said}");
    assert!(said.contains("re-project the scenario sets"), "{said}");
    assert_eq!(joint_rows(&t.db, PROF, "SCENARIO").await, 0);
    let r = find(&t.db, PROF).await.unwrap().unwrap();
    assert_eq!(r.feature_space.as_deref(), Some("stab-v2-signature-h20"));
    assert_eq!(r.scenario_model_id, None);
    backfill_joint_scenarios(
        &t.db,
        &projection(MONTE_CARLO_SET, PROF, "num-scenario-core-v2"),
        &Quiet,
    )
    .await
    .unwrap();
}

async fn built_in_ids_keep_their_feature_space(t: TestDb) {
    let (_, g) = small_market(t.dir.path());
    import_all(&t.db, &g).await;
    let d = g.last_date;
    numeric(&t.db, d, "num-stab-core-v2").await;
    let rows = count(&t.db, "joint_embeddings").await;
    let e = backfill_joint_states(
        &t.db,
        &states(d, "joint-stab-fragility-v1", "num-stab-core-v2", None),
        &Quiet,
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("joint model joint-stab-fragility-v1 is the space of the documents' v1 encoders")
            && e.contains("store them under --joint-model-id joint-stab-fragility-v2"),
        "{e}"
    );
    numeric_scenarios(&t.db, HISTORICAL_SET, "num-scenario-core-v3").await;
    let e = backfill_joint_scenarios(
        &t.db,
        &projection(HISTORICAL_SET, V2, "num-scenario-core-v3"),
        &Quiet,
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("joint model joint-stab-fragility-v2 is the space of the v2 signature pair")
            && e.contains("--joint-model-id joint-stab-fragility-v3"),
        "{e}"
    );
    assert_eq!(count(&t.db, "joint_embeddings").await, rows, "nothing written");
    assert!(
        joint_models(&t.db).await.unwrap().is_empty(),
        "nothing registered"
    );
}

async fn the_cli_lists_registers_and_replaces_joint_models(t: TestDb) {
    let (_, g) = small_market(t.dir.path());
    import_all(&t.db, &g).await;
    let d = g.last_date.to_string();
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_stabspace"))
            .args(args)
            .args(["--database-url", &t.url])
            .env_remove("DATABASE_URL")
            .env_remove("STABSPACE_READ_DATABASE_URL")
            .env("STABSPACE_DATA_DIR", t.dir.path())
            .output()
            .expect("run stabspace")
    };
    let ok = |args: &[&str]| {
        let o = run(args);
        assert!(o.status.success(), "{args:?}: {}", text(&o.stderr));
        text(&o.stdout)
    };
    ok(&[
        "backfill-numeric-embeddings",
        "--as-of",
        &d,
        "--market-id",
        "US_EQ",
        "--model-id",
        "num-stab-core-v3",
    ]);
    let states = [
        "backfill-joint-stab-fragility-states",
        "--as-of",
        &d,
        "--market-id",
        "US_EQ",
        "--stab-model-id",
        "num-stab-core-v3",
        "--joint-model-id",
        "my-v3",
    ];
    assert!(ok(&states).contains("registered a new joint model"));
    let csv = ok(&["show-joint-models"]);
    let mut lines = csv.lines();
    assert_eq!(
        lines.next(),
        Some(
            "joint_model_id,kind,feature_space,stab_model_id,profile_model_id,scenario_model_id,w_stab,w_prof,\
             w_scen,registered_at"
        )
    );
    let row = lines.next().expect("a row");
    assert!(
        row.starts_with("my-v3,identity-weighted-average,stab-v3-multiscale-h20,num-stab-core-v3,none,,1"),
        "{row}"
    );
    assert_eq!(lines.next(), None);

    // A v2 run under it: exit 1 naming the space; --replace redefines it.
    ok(&[
        "backfill-numeric-embeddings",
        "--as-of",
        &d,
        "--market-id",
        "US_EQ",
        "--model-id",
        "num-stab-core-v2",
    ]);
    let mut v2 = states.to_vec();
    v2[6] = "num-stab-core-v2";
    let o = run(&v2);
    assert!(!o.status.success());
    let e = text(&o.stderr);
    assert!(
        e.contains("feature space stab-v2-signature-h20 (registered: stab-v3-multiscale-h20)"),
        "{e}"
    );
    v2.push("--replace");
    let out = ok(&v2);
    assert!(
        out.contains("--replace: my-v3: feature space stab-v3-multiscale-h20 → stab-v2-signature-h20"),
        "{out}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&ok(&["show-joint-models", "--format", "json"])).unwrap();
    assert_eq!(json[0]["feature_space"], "stab-v2-signature-h20");
    assert_eq!(json[0]["stab_model_id"], "num-stab-core-v2");
}

async fn concurrent_backfills_of_a_new_joint_model_queue_and_both_succeed(t: TestDb) {
    let (_, g) = small_market(t.dir.path());
    import_all(&t.db, &g).await;
    let d = g.last_date;
    numeric(&t.db, d, "num-stab-core-v2").await;
    numeric_scenarios(&t.db, HISTORICAL_SET, "num-scenario-core-v2").await;
    // A state backfill and a scenario projection register the same new id at once.
    let states = states(d, "joint-concurrent", "num-stab-core-v2", None);
    let scenarios = projection(HISTORICAL_SET, "joint-concurrent", "num-scenario-core-v2");
    let (a, b) = tokio::join!(
        backfill_joint_states(&t.db, &states, &Quiet),
        backfill_joint_scenarios(&t.db, &scenarios, &Quiet)
    );
    let (a, b) = (a.expect("states"), b.expect("scenarios"));
    assert_eq!(
        u8::from(a.summary.registration.registered) + u8::from(b.registration.registered),
        1,
        "exactly one registered it: {a} / {b}"
    );
    let r = find(&t.db, "joint-concurrent").await.unwrap().unwrap();
    assert_eq!(r.stab_model_id.as_deref(), Some("num-stab-core-v2"), "{r:?}");
    assert_eq!(
        r.scenario_model_id.as_deref(),
        Some("num-scenario-core-v2"),
        "{r:?}"
    );
    assert_eq!(r.feature_space.as_deref(), Some("stab-v2-signature-h20"));
}
