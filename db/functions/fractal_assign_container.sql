-- The whole assignment of POST /v1/containers in one round trip: Idempotency-Key, the plan (p_terms: billing
-- enforced, else null), offer, maintenance, one live container per user and app, then a warm container claimed
-- with SKIP LOCKED (201) or a new one with its start job (202). p_prefer: regions in order of preference (from
-- the client's location; null: the catalog's order). p_cluster: a developer's assignment onto that cluster (the
-- caller checked its scope and that the cluster is active in p_region): never from the warm pool. Raises SQLSTATEs FR001-FR011, which
-- services/sql-errors.ts turns into problems; raising rolls the whole call back (the Idempotency-Key row too).
-- The answer is written into the Idempotency-Key row by an upsert on its primary key: an `update ... where`
-- kept a sequential-scan plan cached from a nearly empty table (see migration T2900).
create or replace function fractal_assign_container(
  p_user uuid, p_key text, p_request_hash text, p_app text, p_region text, p_dpi integer,
  p_aes_key text, p_secret_hash text, p_deadline timestamptz, p_terms jsonb, p_prefer text[], p_cluster uuid
) returns jsonb language plpgsql as $$
declare
  v_record idempotency_record;
  v_entitled jsonb;
  v_app_plans text[];
  v_regions text[];
  v_max_live integer;
  v_region text;
  v_enabled boolean;
  v_window maintenance;
  v_live uuid;
  v_live_count bigint;
  v_container container;
  v_created jsonb;
begin
  insert into idempotency_record (user_id, key, request_hash) values (p_user, p_key, p_request_hash)
    on conflict (user_id, key) do nothing;
  if not found then
    -- A replay (a concurrent first request has committed by now: the insert waited for it).
    select * into v_record from idempotency_record where user_id = p_user and key = p_key;
    if v_record.request_hash <> p_request_hash or v_record.status is null then
      raise exception 'idempotency key reused' using errcode = 'FR001';
    end if;
    return jsonb_build_object('outcome', 'replay', 'status', v_record.status, 'body', v_record.body);
  end if;

  -- The plan decides: may they at all, how many at once, where, how sharp.
  if p_terms is not null then
    v_entitled := fractal_entitlement(p_user, p_terms);
    v_max_live := (v_entitled->>'concurrentContainers')::integer;
    if jsonb_typeof(v_entitled->'regions') = 'array' then
      v_regions := array(select jsonb_array_elements_text(v_entitled->'regions'));
    end if;
    if p_dpi is not null and p_dpi > (v_entitled->>'maxDpi')::integer then
      raise exception 'dpi above the plan' using errcode = 'FR010', detail = v_entitled->>'maxDpi';
    end if;
    if v_regions is not null and p_region is not null and not (p_region = any(v_regions)) then
      raise exception 'region not in the plan' using errcode = 'FR009', detail = p_region;
    end if;
    -- An app with a plan list (plan_app) is offered only to those plans (the trial: apps without a list).
    select array_agg(plan_id order by plan_id) into v_app_plans from plan_app where app_id = p_app;
    if v_app_plans is not null and not coalesce(v_entitled->>'plan' = any(v_app_plans), false) then
      raise exception 'app not in the plan' using errcode = 'FR011', detail = array_to_string(v_app_plans, ',');
    end if;
  end if;

  select ar.region_code, r.enabled into v_region, v_enabled
    from app_region ar join region r on r.code = ar.region_code join app a on a.id = ar.app_id
    -- An app disabled, or disabled in a region, is not offered there (FR003).
    where ar.app_id = p_app and a.enabled and ar.enabled
      and (ar.region_code = p_region or (p_region is null and r.enabled
        and (v_regions is null or ar.region_code = any(v_regions))
        and not exists (select 1 from maintenance m where m.scope = r.code and m.ends_at > now())))
    order by array_position(p_prefer, ar.region_code) nulls last, r.sort_order, r.code limit 1;
  if v_region is null then
    if not exists (select 1 from app where id = p_app) then
      raise exception 'unknown app' using errcode = 'FR002';
    end if;
    raise exception 'app not offered' using errcode = 'FR003';
  end if;
  if not v_enabled then
    raise exception 'region disabled' using errcode = 'FR004', detail = v_region;
  end if;
  select * into v_window from maintenance where scope in ('global', v_region) and ends_at > now()
    order by ends_at desc limit 1;
  if found then
    raise exception '%', v_window.message using errcode = 'FR005', detail = extract(epoch from v_window.ends_at)::text;
  end if;

  -- One assignment per user and app at a time; with a plan limit (counted over every app), one per user.
  if v_max_live is not null then
    perform pg_advisory_xact_lock(hashtextextended(p_user::text, 0));
  else
    perform pg_advisory_xact_lock(hashtextextended(p_user::text || ':' || p_app, 0));
  end if;
  -- One read of the user's live containers answers both: this app's (one at a time) and all (the plan's limit).
  select (array_agg(id) filter (where app_id = p_app))[1], count(*) into v_live, v_live_count
    from container where user_id = p_user and state in ('creating', 'starting', 'available', 'in_use');
  if v_live is not null then
    raise exception 'already running' using errcode = 'FR006', detail = v_live::text;
  end if;
  if v_max_live is not null and v_live_count >= v_max_live then
    raise exception 'plan limit' using errcode = 'FR007', detail = v_max_live::text;
  end if;

  -- A paused pool hands out nothing (a new container starts instead). The shared lock orders claims against
  -- pausing (which takes it exclusively, services/containers/containers.warm-pools.ts): once a pause has
  -- committed, no claim takes from the pool; the paused flag is read after the lock, in a fresh snapshot.
  if p_cluster is null then
    perform pg_advisory_xact_lock_shared(hashtextextended('warm_pool:' || p_app || '/' || v_region, 0));
    if not exists (select 1 from warm_pool where app_id = p_app and region_code = v_region and paused) then
      update container set user_id = p_user, state = 'in_use', assigned_at = now(), updated_at = now(),
          dpi = coalesce(p_dpi, dpi)
        where id = (select id from container where app_id = p_app and region_code = v_region
                      and state = 'available' and user_id is null
                    order by created_at limit 1 for update skip locked)
        returning * into v_container;
    end if;
  end if;
  if v_container.id is not null then
    insert into container_event (container_id, from_state, to_state, reason)
      values (v_container.id, 'available', 'in_use', 'assigned from the warm pool');
    insert into idempotency_record (user_id, key, request_hash, status, body, headers)
      values (p_user, p_key, p_request_hash, 201, jsonb_build_object('containerId', v_container.id), '{}')
      on conflict (user_id, key) do update set status = excluded.status, body = excluded.body, headers = excluded.headers;
    return jsonb_build_object('outcome', 'claimed', 'container', to_jsonb(v_container));
  end if;

  v_created := fractal_create_container(p_user, p_app, v_region, p_dpi, p_aes_key, p_secret_hash, p_deadline);
  if p_cluster is not null then
    -- Pinned: the start job places the task on this cluster rather than choosing one.
    update container set cluster_id = p_cluster where id = (v_created->'container'->>'id')::uuid;
    v_created := jsonb_set(v_created, '{container,cluster_id}', to_jsonb(p_cluster));
  end if;
  insert into idempotency_record (user_id, key, request_hash, status, body, headers)
    values (p_user, p_key, p_request_hash, 202,
      jsonb_build_object('containerId', v_created->'container'->>'id', 'jobId', v_created->'job'->>'id'), '{}')
    on conflict (user_id, key) do update set status = excluded.status, body = excluded.body, headers = excluded.headers;
  return v_created || jsonb_build_object('outcome', 'created');
end $$;
