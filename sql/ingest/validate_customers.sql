-- Parse and validate raw incoming rows, one row at a time, into mallscore_ingest_stage: a table that lives only
-- inside the load's transaction (dropped before the commit; a table in the file, not in memory, so
-- a large input does not grow the memory). reason is NULL for a row that passes.
-- Every rule yields a message a person can act on; the first failing rule wins. The one rule
-- that needs the whole input (an id on more than one line) is applied after all rows are in:
-- see duplicate_ids.sql and mark_duplicates.sql.
-- A CSV source sends filler rows between its rows (line_no 0: the bytes between two fields
-- of a column, so a column is a zero-copy view of the file's block); they are dropped here.
-- A row marked plain (digits without leading zeros, gender exactly Male or Female: see
-- mallscore/ingest.py) is read with plain casts and only its ranges are checked; its raw text
-- is not kept, because it is exactly what its parsed values print as (insert_rejected.sql).
-- Every case below gives the same result for a plain row as the full rules would.
-- The ranges ($age_min..$age_max, $score_min..$score_max) are the model inputs' own, from
-- mallscore/specs.py: the loader passes them, and the CSV reader uses the same ones (csv_split).
create or replace table mallscore_ingest_stage as
with incoming as (
    select * from incoming_customers
    where line_no > 0
),

parsed as (
    select
        line_no,
        problem,
        plain,
        customer_id as raw_customer_id,
        gender as raw_gender,
        age as raw_age,
        annual_income as raw_annual_income,
        spending_score as raw_spending_score,
        case when plain then customer_id else trim(coalesce(customer_id, '')) end as id_text,
        case
            when plain then cast(customer_id as bigint)
            when regexp_full_match(trim(coalesce(customer_id, '')), '[+-]?[0-9]+')
                then try_cast(trim(customer_id) as bigint)
        end as customer_id,
        case
            when plain then gender
            else
                case upper(trim(coalesce(gender, '')))
                    when 'FEMALE' then 'Female'
                    when 'F' then 'Female'
                    when 'MALE' then 'Male'
                    when 'M' then 'Male'
                end
        end as gender,
        case when plain then age else trim(coalesce(age, '')) end as age_text,
        case when plain then cast(age as double) else try_cast(trim(age) as double) end as age_value,
        case when plain then annual_income else trim(coalesce(annual_income, '')) end as income_text,
        case
            when plain then cast(annual_income as double) else try_cast(trim(annual_income) as double)
        end as income_value,
        case when plain then spending_score else trim(coalesce(spending_score, '')) end as score_text,
        case
            when plain then cast(nullif(spending_score, '') as double)
            else try_cast(trim(spending_score) as double)
        end as score_value
    from incoming
),

checked as (
    select
        *,
        case
            when plain and age_value between $age_min and $age_max
                and (score_text = '' or score_value between $score_min and $score_max)
                then null
            when id_text = '' then 'customer_id is missing'
            when customer_id is null and regexp_full_match(id_text, '[+-]?[0-9]+')
                then 'customer_id ' || left(id_text, 40)
                    || ' is out of range (an id must fit in 64 bits: -9223372036854775808..9223372036854775807)'
            when customer_id is null
                then 'customer_id "' || left(id_text, 40) || '" is not a whole number'
            when trim(coalesce(raw_gender, '')) = '' then 'gender is missing'
            when gender is null
                then 'gender "' || left(trim(raw_gender), 40) || '" is not one of Male, Female, M, F'
            when age_text = '' then 'age is missing'
            when age_value is null or not isfinite(age_value)
                then 'age "' || left(age_text, 40) || '" is not a number'
            when age_value <> floor(age_value)
                then 'age ' || age_text || ' is not a whole number of years'
            when age_value < $age_min or age_value > $age_max
                then 'age ' || age_text || ' is outside ' || $age_min || '..' || $age_max
            when income_text = '' then 'annual income is missing'
            when income_value is null or not isfinite(income_value)
                then 'annual income "' || left(income_text, 40) || '" is not a number'
            when income_value < 0
                then 'annual income ' || income_text || ' is negative'
            when score_text <> '' and (score_value is null or not isfinite(score_value))
                then 'spending score "' || left(score_text, 40) || '" is not a number (leave it empty for a new customer)'
            when score_text <> '' and score_value <> floor(score_value)
                then 'spending score ' || score_text || ' is not a whole number'
            when score_text <> '' and (score_value < $score_min or score_value > $score_max)
                then 'spending score ' || score_text || ' is outside ' || $score_min || '..' || $score_max
        end as reason
    from parsed
),

final as (
    select
        line_no,
        problem,
        plain,
        case when not plain or reason is not null or problem is not null then raw_customer_id end as raw_customer_id,
        case when not plain or reason is not null or problem is not null then raw_gender end as raw_gender,
        case when not plain or reason is not null or problem is not null then raw_age end as raw_age,
        case
            when not plain or reason is not null or problem is not null then raw_annual_income
        end as raw_annual_income,
        case
            when not plain or reason is not null or problem is not null then raw_spending_score
        end as raw_spending_score,
        customer_id,
        gender,
        case when reason is null then cast(age_value as integer) end as age,
        case when reason is null then income_value end as annual_income,
        case when reason is null and score_text <> '' then cast(score_value as integer) end as spending_score,
        coalesce(problem, reason) as reason
    from checked
)

select * from final
