-- Behaviour-group features, defined once: annual income and spending score of the customers whose
-- score is known (k-means trains on this view). The nightly job assigns groups from the same columns
-- of features_customer for the rows where spending_score is not null, i.e. exactly these rows
-- (tests/sql/test_groups_sql.py holds the two equal). New customers have no score and no group.
-- unique_key: customer_id
create or replace view features_behaviour as
with features as (
    select * from features_customer
),

final as (
    select
        customer_id,
        annual_income,
        cast(spending_score as double) as spending_score,
        updated_at
    from features
    where spending_score is not null
)

select * from final;
