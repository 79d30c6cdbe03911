-- What the upsert of this load's plain rows (mallscore_ingest_plain) will do to raw_customers:
-- new, changed and unchanged ids (as count_changes.sql does for the stage's valid rows).
with plain as (
    select * from mallscore_ingest_plain
),

compared as (
    select
        r.customer_id is null as is_new,
        (r.gender, r.age, r.annual_income, r.spending_score)
        is not distinct from (p.gender, p.age, p.annual_income, p.spending_score) as is_same
    from plain as p
    left join raw_customers as r using (customer_id)
),

final as (
    select
        count(*) filter (where is_new) as inserted,
        count(*) filter (where not is_new and not is_same) as updated,
        count(*) filter (where not is_new and is_same) as unchanged
    from compared
)

select * from final
