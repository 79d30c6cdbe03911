import numpy as np

from mallscore.synth import GROUPS, generate, synth_customers


def test_same_seed_same_customers_other_seed_differs():
    a, b, c = generate(500, seed=3), generate(500, seed=3), generate(500, seed=4)
    assert a.equals(b)
    assert not a.equals(c)


def test_shape_matches_the_public_data():
    df = generate(50_000, seed=1).to_pandas()
    assert 37 <= df.age.mean() <= 41
    assert 57 <= df.annual_income.mean() <= 64
    assert 47 <= df.spending_score.mean() <= 53
    assert 0.54 <= (df.gender == "Female").mean() <= 0.58
    assert 0.44 <= (df.spending_score > 50).mean() <= 0.52
    # younger customers score higher
    assert np.corrcoef(df.age, df.spending_score)[0, 1] < -0.2
    assert df.age.between(18, 70).all() and df.spending_score.between(1, 100).all()


def test_five_income_by_score_groups():
    df = generate(50_000, seed=2).to_pandas()
    low, high = df.annual_income < 40, df.annual_income > 69
    mid = ~low & ~high
    # low and high income split into a low-score and a high-score group; mid income sits in the middle
    for band in (low, high):
        scores = df.spending_score[band]
        assert ((scores > 40) & (scores < 55)).mean() < 0.2
        assert (scores <= 40).mean() > 0.3 and (scores >= 55).mean() > 0.3
    assert df.spending_score[mid].between(30, 70).mean() > 0.9
    shares = np.array([g[1] for g in GROUPS])
    assert abs(mid.mean() - shares[2]) < 0.02


def test_new_customers_have_no_score():
    table = generate(100, seed=1, new=True)
    assert table.column("spending_score").null_count == 100


def test_ids_never_collide_with_the_warehouse(con):
    first = synth_customers(con, 100, seed=1)
    second = synth_customers(con, 50, seed=1, new=True)
    assert second.first_id == first.last_id + 1
    rows, distinct = con.execute("select count(*), count(distinct customer_id) from raw_customers").fetchall()[0]
    assert rows == distinct == 150
