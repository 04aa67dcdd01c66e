//! A route's page, hydrated synchronously only.
//!
//! The router type-erases every route's view (`AnyView`), and an erased view
//! keeps a pointer to its *async* hydration as well as its normal one, so the
//! compiler emits a second, async copy of every page's whole hydration code.
//! Only lazy routes and islands ever hydrate asynchronously; Folio hydrates
//! the body synchronously (`hydrate_body`) and has neither. `SyncPage`
//! delegates everything to the page except `hydrate_async`, which it leaves
//! at the trait's default (the synchronous hydration), so the async copy is
//! never generated. See bench/NOTES.md, "WASM size".

use leptos::tachys::html::attribute::{any_attribute::AnyAttribute, Attribute};
use leptos::tachys::hydration::Cursor;
use leptos::tachys::ssr::StreamBuilder;
use leptos::tachys::view::{add_attr::AddAnyAttr, Position, PositionState, Render, RenderHtml};

pub struct SyncPage<T>(pub T);

impl<T: Render> Render for SyncPage<T> {
    type State = T::State;

    fn build(self) -> Self::State {
        self.0.build()
    }

    fn rebuild(self, state: &mut Self::State) {
        self.0.rebuild(state)
    }
}

impl<T: AddAnyAttr> AddAnyAttr for SyncPage<T> {
    type Output<SomeNewAttr: Attribute> = SyncPage<T::Output<SomeNewAttr>>;

    fn add_any_attr<NewAttr: Attribute>(self, attr: NewAttr) -> Self::Output<NewAttr>
    where
        Self::Output<NewAttr>: RenderHtml,
    {
        SyncPage(self.0.add_any_attr(attr))
    }
}

impl<T: RenderHtml> RenderHtml for SyncPage<T> {
    type AsyncOutput = SyncPage<T::AsyncOutput>;
    type Owned = SyncPage<T::Owned>;

    const MIN_LENGTH: usize = T::MIN_LENGTH;
    const EXISTS: bool = T::EXISTS;

    fn dry_resolve(&mut self) {
        self.0.dry_resolve()
    }

    async fn resolve(self) -> Self::AsyncOutput {
        SyncPage(self.0.resolve().await)
    }

    fn html_len(&self) -> usize {
        self.0.html_len()
    }

    fn to_html_with_buf(
        self,
        buf: &mut String,
        position: &mut Position,
        escape: bool,
        mark_branches: bool,
        extra_attrs: Vec<AnyAttribute>,
    ) {
        self.0
            .to_html_with_buf(buf, position, escape, mark_branches, extra_attrs)
    }

    fn to_html_async_with_buf<const OUT_OF_ORDER: bool>(
        self,
        buf: &mut StreamBuilder,
        position: &mut Position,
        escape: bool,
        mark_branches: bool,
        extra_attrs: Vec<AnyAttribute>,
    ) where
        Self: Sized,
    {
        self.0.to_html_async_with_buf::<OUT_OF_ORDER>(
            buf,
            position,
            escape,
            mark_branches,
            extra_attrs,
        )
    }

    fn hydrate<const FROM_SERVER: bool>(
        self,
        cursor: &Cursor,
        position: &PositionState,
    ) -> Self::State {
        self.0.hydrate::<FROM_SERVER>(cursor, position)
    }

    // `hydrate_async` is deliberately not forwarded (see the module docs).

    fn into_owned(self) -> Self::Owned {
        SyncPage(self.0.into_owned())
    }
}
