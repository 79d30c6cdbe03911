-- Customers as last loaded: one row per customer, the newest load wins.
-- unique_key: customer_id
create table if not exists raw_customers (
    customer_id bigint not null,
    gender varchar not null,
    age integer not null,
    annual_income double not null,
    spending_score integer,
    load_id varchar not null,
    updated_at timestamp not null
);
