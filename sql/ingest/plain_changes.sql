-- The plain rows of this load (mallscore_ingest_plain) that change raw_customers: new customers
-- and changed ones (an identical row changes nothing), as count_changes.sql finds them for the
-- stage. Kept for the load's transaction: the delete and the insert that follow join only these.
create or replace temp table ingest_plain_upserts as
with plain as (
    select * from mallscore_ingest_plain
),

compared as (
    select
        p.customer_id,
        r.customer_id is null as is_new,
        (r.gender, r.age, r.annual_income, r.spending_score)
        is not distinct from (p.gender, p.age, p.annual_income, p.spending_score) as is_same
    from plain as p
    left join raw_customers as r using (customer_id)
),

final as (
    select customer_id, is_new
    from compared
    where is_new or not is_same
)

select * from final
