-- Features joined to labels: one row per customer with a known score.
-- unique_key: customer_id
create or replace view training_set as
with features as (
    select * from features_customer
),

labels as (
    select * from labels_high_spender
),

final as (
    select
        features.customer_id,
        features.age,
        features.annual_income,
        features.gender_female,
        features.spending_score,
        labels.high_spender
    from features
    inner join labels using (customer_id)
)

select * from final;
