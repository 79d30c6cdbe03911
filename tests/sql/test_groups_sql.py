"""features_behaviour: the groups' features, exactly the known-score rows of features_customer."""

from __future__ import annotations

from mallscore.synth import synth_customers
from mallscore.warehouse import build


def test_features_behaviour_is_features_customer_where_the_score_is_known(con):
    build(con, check=False)
    synth_customers(con, 50, 1)
    synth_customers(con, 20, 2, new=True)
    build(con)  # key checks included

    ours = con.execute("select * from features_behaviour order by customer_id").fetchall()
    theirs = con.execute(
        "select customer_id, annual_income, cast(spending_score as double), updated_at from features_customer "
        "where spending_score is not null order by customer_id"
    ).fetchall()

    assert ours == theirs and len(ours) == 50
