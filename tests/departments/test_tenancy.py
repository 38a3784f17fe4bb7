import asyncio

import pytest
from asgiref.sync import sync_to_async

from departments.tenancy import ScopeError, all_departments, current_scope, department_scope
from tests.tenancyprobe.models import ProbeRecord


@pytest.fixture
def records(personas):
    with all_departments(reason="test set-up"):
        ProbeRecord.objects.create(department=personas.department_a, label="a-1")
        ProbeRecord.objects.create(department=personas.department_a, label="a-2")
        ProbeRecord.objects.create(department=personas.department_b, label="b-1")
    return personas


def test_unscoped_query_raises(records):
    with pytest.raises(ScopeError, match="outside a department scope"):
        list(ProbeRecord.objects.all())
    with pytest.raises(ScopeError):
        ProbeRecord.objects.filter(label="b-1").exists()


def test_scope_shows_only_its_department(records):
    with department_scope(records.department_a):
        assert sorted(ProbeRecord.objects.values_list("label", flat=True)) == ["a-1", "a-2"]
        assert not ProbeRecord.objects.filter(label="b-1").exists()
        with pytest.raises(ProbeRecord.DoesNotExist):
            ProbeRecord.objects.get(label="b-1")
    with department_scope(records.department_b):
        assert list(ProbeRecord.objects.values_list("label", flat=True)) == ["b-1"]


def test_scope_closes_after_the_block(records):
    with department_scope(records.department_a):
        pass
    assert current_scope() is None
    with pytest.raises(ScopeError):
        ProbeRecord.objects.count()


def test_all_departments_needs_a_reason(records):
    with pytest.raises(ValueError, match="needs a reason"), all_departments(reason="  "):
        pass
    with all_departments(reason="retention purge"):
        assert ProbeRecord.objects.count() == 3


@pytest.mark.django_db(transaction=True)
def test_scope_follows_into_sync_to_async_threads_and_not_across_tasks(personas):
    with all_departments(reason="test set-up"):
        ProbeRecord.objects.create(department=personas.department_a, label="a-1")
        ProbeRecord.objects.create(department=personas.department_b, label="b-1")

    def labels() -> list[str]:
        return list(ProbeRecord.objects.values_list("label", flat=True))

    both_open = asyncio.Barrier(2)

    async def in_scope(department) -> list[str]:
        with department_scope(department):
            await asyncio.wait_for(both_open.wait(), timeout=10)  # both tasks are inside their scope
            return await sync_to_async(labels)()

    async def unscoped() -> str:
        try:
            await sync_to_async(labels)()
        except ScopeError:
            return "refused"
        return "leaked"

    async def main():
        return await asyncio.gather(in_scope(personas.department_a), in_scope(personas.department_b), unscoped())

    assert asyncio.run(main()) == [["a-1"], ["b-1"], "refused"]
