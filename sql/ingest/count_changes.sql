-- Rows in, rejected, and what the upsert will do to raw_customers: new, changed, unchanged ids.
with staged as (
    select * from mallscore_ingest_stage
),

valid as (
    select * from staged where reason is null
),

compared as (
    select
        r.customer_id is null as is_new,
        (r.gender, r.age, r.annual_income, r.spending_score)
        is not distinct from (v.gender, v.age, v.annual_income, v.spending_score) as is_same
    from valid as v
    left join raw_customers as r using (customer_id)
),

final as (
    select
        (select count(*) from staged) as rows_in,
        (select count(*) from staged where reason is not null) as rejected,
        count(*) filter (where is_new) as inserted,
        count(*) filter (where not is_new and not is_same) as updated,
        count(*) filter (where not is_new and is_same) as unchanged
    from compared
)

select * from final
