-- Model features, defined once: training reads them, scoring reads them.
-- spending_score is here only for the notebook's leaky `seed` spec; it is NULL
-- for new customers.
-- unique_key: customer_id
create or replace view features_customer as
with customers as (
    select * from stg_customers
),

final as (
    select
        customer_id,
        age,
        annual_income,
        case when gender = 'Female' then 1.0 else 0.0 end as gender_female,
        spending_score,
        updated_at
    from customers
)

select * from final;
